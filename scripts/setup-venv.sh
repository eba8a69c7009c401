#!/usr/bin/env bash
# Makes the Python test environment (scripts/python-env.sh says where): a
# virtual environment over Debian's python3 with torch from PyPI, used on the
# CPU. An environment that already imports torch is kept as it is, so a
# machine without network that has one still works.
#
# PyPI has no CPU-only torch wheel for Linux x86_64: its torch links the CUDA
# libraries (nvidia-* wheels, ~3 GiB installed) and imports fine without a
# GPU. The environment is made once per machine; pip's own cache makes a
# rebuild fast.
set -euo pipefail
cd "$(dirname "$0")/.."
unset SPARSEK_PYTHON
source scripts/python-env.sh
venv=$SPARSEK_VENV

if [ -x "$venv/bin/python" ] &&
   version=$("$venv/bin/python" -c "import numpy, pytest, torch; print(torch.__version__)" 2> /dev/null); then
  echo "setup-venv: $venv has torch $version"
  exit 0
fi
echo "setup-venv: installing torch from PyPI into $venv"
start=$SECONDS
# A half-made environment (an interrupted install) is made again from scratch.
if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
  echo "setup-venv: $venv exists and is not a virtual environment; set SPARSEK_VENV elsewhere" >&2
  exit 1
fi
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
/usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch
"$venv/bin/python" -c "import torch, numpy, pytest; torch.ones(2).sum()"
echo "setup-venv: done in $((SECONDS - start)) s"
