# Sourced by the scripts: where the Python test environment lives and which
# interpreter runs the Python tests and examples.
#
# SPARSEK_VENV: a virtual environment over Debian's python3 (its numpy and
# pytest through --system-site-packages) plus CPU-usable torch from PyPI, made
# by scripts/setup-venv.sh. It lives outside the clone so that fresh clones
# and CI runs reuse it.
# SPARSEK_PYTHON: that environment's python where it exists, else Debian's
# python3 (the torch tests then skip, with a reason).
SPARSEK_VENV=${SPARSEK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsek/venv}
if [ -z "${SPARSEK_PYTHON:-}" ]; then
  if [ -x "$SPARSEK_VENV/bin/python" ]; then
    SPARSEK_PYTHON=$SPARSEK_VENV/bin/python
  else
    SPARSEK_PYTHON=/usr/bin/python3
  fi
fi
export SPARSEK_VENV SPARSEK_PYTHON
