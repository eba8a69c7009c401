# GPU suite setup: finds the artifacts built by scripts/gpu_artifacts.py; skips
# without torch, a GPU or the artifacts, unless SPARSEK_GPU_REQUIRED=1 (the
# GPU machine's run), where a missing piece is an error instead.
import json
import os

import pytest

ARTIFACTS = os.environ.get(
    "SPARSEK_GPU_ARTIFACTS",
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "build", "gpu-artifacts"))


def _unavailable(reason):
    if os.environ.get("SPARSEK_GPU_REQUIRED"):
        pytest.fail(f"GPU suite required but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def torch():
    try:
        import torch as t
    except ImportError:
        _unavailable("torch is not installed")
    if not t.cuda.is_available():
        _unavailable("no CUDA device")
    return t


@pytest.fixture(scope="session")
def manifest():
    path = os.path.join(ARTIFACTS, "manifest.json")
    if not os.path.exists(path):
        _unavailable(f"no GPU artifacts at {ARTIFACTS} (run scripts/build-gpu-artifacts.sh)")
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def gpu_lib(torch, manifest):
    from sparsek.gpu import GPULibrary

    return GPULibrary(os.path.join(ARTIFACTS, manifest["library"]))


@pytest.fixture(scope="session")
def gpu_layer_lib(torch, manifest):
    """examples/sparsek_layer.mlir compiled for the GPU."""
    from sparsek.gpu import GPULibrary

    return GPULibrary(os.path.join(ARTIFACTS, manifest["layer_library"]))
