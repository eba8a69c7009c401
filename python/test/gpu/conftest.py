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


def _library(manifest, key):
    """The artifact library the manifest names under `key`."""
    from sparsek.gpu import GPULibrary

    return GPULibrary(os.path.join(ARTIFACTS, manifest[key]))


@pytest.fixture(scope="session")
def gpu_lib(torch, manifest):
    return _library(manifest, "library")


@pytest.fixture(scope="session")
def gpu_decomposed_lib(torch, manifest):
    """The composite op compiled with fuse-select-attention=false."""
    return _library(manifest, "decomposed_library")


def _require_sm90a(torch, manifest, key):
    """Skips, off compute capability 9.0, a library of sm_90a code (wgmma), which runs
    there alone (artifacts built before the default moved to sm_90a are plain sm_90)."""
    sm90a = "chip=sm_90a" in manifest.get("options", {}).get(key, "")
    if sm90a and torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"{manifest[key]} is sm_90a code: it needs an H100 or H200")


@pytest.fixture(scope="session")
def gpu_auto_lib(torch, manifest):
    """select and the composite op with every GPU pipeline default, on sm_90a (the chip
    the Python layer compiles for on H100/H200; the composite op then takes the wgmma
    tiles)."""
    _require_sm90a(torch, manifest, "auto_library")
    return _library(manifest, "auto_library")


@pytest.fixture(scope="session")
def gpu_mma_sync_lib(torch, manifest):
    """The composite op with prefill-kernel=mma-sync (the tile-first kernel)."""
    if "mma_sync_library" not in manifest:
        _unavailable("the GPU artifacts predate the mma-sync library (rebuild them)")
    return _library(manifest, "mma_sync_library")


@pytest.fixture(scope="session", params=["simt", "mma"])
def gpu_decode_tiles_lib(request, torch, manifest):
    """decode_attention with decode-kernel=tiles (the split-K tile kernel on
    CUDA cores) and decode-kernel=tiles-mma (the same on tensor cores): the
    same functions, so every test of one runs on both."""
    key = {"simt": "decode_tiles_library", "mma": "decode_tiles_mma_library"}[request.param]
    if key not in manifest:
        _unavailable(f"the GPU artifacts predate {key} (rebuild them)")
    return _library(manifest, key)


@pytest.fixture(scope="session")
def gpu_wgmma_lib(torch, manifest):
    """The composite op with prefill-kernel=wgmma (the same tiles on Hopper
    wgmma; its kernels are sm_90a code, which runs on compute capability 9.0
    alone)."""
    if "wgmma_library" not in manifest:
        _unavailable("the GPU artifacts predate the wgmma library (rebuild them)")
    _require_sm90a(torch, manifest, "wgmma_library")
    return _library(manifest, "wgmma_library")


@pytest.fixture(scope="session")
def gpu_wgmma128_lib(torch, manifest):
    """The same wgmma kernel with two warpgroups per tile (tile-rows=128; the
    default tiles have 64 rows on one warpgroup)."""
    if "wgmma128_library" not in manifest:
        _unavailable("the GPU artifacts predate the 128-row wgmma library (rebuild them)")
    _require_sm90a(torch, manifest, "wgmma128_library")
    return _library(manifest, "wgmma128_library")


@pytest.fixture(scope="session")
def gpu_wgmma_rows_lib(torch, manifest):
    """The wgmma library's functions with row-selection=true: rows of at most 4096 candidates
    take the one-launch row selection (RowSelection.h) instead of the chunked one."""
    if "wgmma_rows_library" not in manifest:
        _unavailable("the GPU artifacts predate the wgmma_rows library (rebuild them)")
    _require_sm90a(torch, manifest, "wgmma_rows_library")
    return _library(manifest, "wgmma_rows_library")


@pytest.fixture(scope="session", params=["grad_tiles_library", "grad_tiles128_library",
                                         "grad_tiles_rows_library"])
def gpu_grad_tiles_lib(request, torch, manifest):
    """select_attention_grad with backward-kernel=tiles (the tile-first mma.sync backward), on
    64-row tiles (4 warps) and 128-row ones (8 warps, sm_90a with the wgmma forward), both on
    16-candidate chunks of the chunked selection, and on 128-row tiles with row-selection=true
    (rows of at most 4096 candidates take the one-launch row selection): the same
    functions, so every test of one runs on each."""
    key = request.param
    if key not in manifest:
        _unavailable(f"the GPU artifacts predate {key} (rebuild them)")
    _require_sm90a(torch, manifest, key)
    return _library(manifest, key)


@pytest.fixture(scope="session")
def gpu_matmul_lib(torch, manifest):
    """bf16/f16 linalg.matmul through the default GPU pipeline (sparsek-gpu-matmul-tiles)."""
    if "matmul_library" not in manifest:
        _unavailable("the GPU artifacts predate the matmul library (rebuild them)")
    _require_sm90a(torch, manifest, "matmul_library")
    return _library(manifest, "matmul_library")


@pytest.fixture(scope="session")
def gpu_layer_lib(torch, manifest):
    """examples/sparsek_layer.mlir compiled for the GPU (default options, sm_90a)."""
    _require_sm90a(torch, manifest, "layer_library")
    return _library(manifest, "layer_library")


@pytest.fixture(scope="session")
def gpu_model(torch, manifest):
    """The tiny transformer compiled whole for the GPU (sparsek.model, default options on
    sm_90a), a CompiledModel on CUDA tensors over the artifact library."""
    if "model_library" not in manifest:
        _unavailable("the GPU artifacts predate the model library (rebuild them)")
    _require_sm90a(torch, manifest, "model_library")
    from sparsek.model import CompiledModel, ModelConfig

    model = manifest["model"]
    return CompiledModel(ModelConfig(**model["config"]), name=model["function"], device="cuda",
                         library=os.path.join(ARTIFACTS, manifest["model_library"]))


@pytest.fixture(scope="session")
def layer_cache(torch):
    """Compiled layers for SparseKAttention on the GPU and on the CPU, from the compiler's
    disk cache: the artifact folder's cache/ (scripts/prebuild_gpu_layers.py) and its
    runtime, unless SPARSEK_CACHE_DIR / SPARSEK_RUNTIME_LIB say otherwise. On a machine
    with the compiler, missing libraries are compiled into that cache."""
    from sparsek import compiler, kv_cache

    cache = os.path.abspath(os.path.join(ARTIFACTS, "cache"))
    runtime = os.path.abspath(os.path.join(ARTIFACTS, "libsparsek_runtime.so"))
    if not os.environ.get("SPARSEK_CACHE_DIR") and os.path.isdir(cache):
        os.environ["SPARSEK_CACHE_DIR"] = cache
    if not os.environ.get("SPARSEK_RUNTIME_LIB") and os.path.isfile(runtime):
        os.environ["SPARSEK_RUNTIME_LIB"] = runtime
    if not compiler.available() and not os.environ.get("SPARSEK_CACHE_DIR"):
        _unavailable(f"no compiler and no prebuilt layers at {cache} (run scripts/build-gpu-artifacts.sh)")
    try:
        has_device = kv_cache.cuda_available()
    except kv_cache.RuntimeNotFound as e:
        _unavailable(str(e))
    if not has_device:
        _unavailable("the runtime has no CUDA backend or sees no GPU")
    return os.environ.get("SPARSEK_CACHE_DIR")
