# The GPU pipeline the Python layer compiles with (sparsek.gpu.default_pipeline): its chip from the visible GPU, and prefill-kernel=auto's choice of tile kernel for that chip.
import re

import pytest

from cpu_harness import require_compiler
from sparsek import compiler, gpu, ir

# One fused select_attention the tile kernels cover (bf16, D = 64).
TILED = ir.module(ir.select_attention_function("sa", 16, 8, "bf16", head_dim=64))


@pytest.fixture
def device(monkeypatch):
    """Sets what sparsek.gpu sees as torch's current GPU: None, or (major, minor)."""
    monkeypatch.delenv("SPARSEK_GPU_CHIP", raising=False)

    def set_device(capability):
        monkeypatch.setattr(gpu, "_device_capability", lambda: capability)
    return set_device


@pytest.mark.parametrize("capability,chip", [
    (None, "sm_90a"),      # no GPU visible: compiling ahead for H100/H200
    ((9, 0), "sm_90a"),    # H100, H200: wgmma
    ((10, 0), "sm_90"),    # later GPUs run sm_90's PTX, not sm_90a code
    ((12, 0), "sm_90"),
])
def test_default_chip_follows_the_device(device, capability, chip):
    device(capability)
    assert gpu.default_chip() == chip
    assert gpu.default_pipeline() == f"sparsek-gpu-pipeline{{chip={chip}}}"


def test_older_gpus_are_a_clear_error(device):
    device((8, 0))
    with pytest.raises(gpu.UnsupportedGPU, match=re.escape(
            "SparseK's GPU kernels need compute capability 9.0 or later (sm_90); this GPU has 8.0")):
        gpu.default_chip()


def test_environment_overrides_the_device(device, monkeypatch):
    device((8, 0))
    monkeypatch.setenv("SPARSEK_GPU_CHIP", "sm_90")
    assert gpu.default_chip() == "sm_90"


def test_default_pipeline_keeps_options_and_an_explicit_chip(device):
    device((9, 0))
    assert (gpu.default_pipeline("prefill-kernel=mma-sync select-chunk=16")
            == "sparsek-gpu-pipeline{chip=sm_90a prefill-kernel=mma-sync select-chunk=16}")
    assert gpu.default_pipeline("format=isa chip=sm_90") == "sparsek-gpu-pipeline{format=isa chip=sm_90}"


def _tile_kernels(pipeline):
    lowered = compiler.run_pipeline(TILED, pipeline)
    return sorted(set(re.findall(r"gpu\.binary @(sparsek_select_attention_\w+?)_\d+ ", lowered)))


@pytest.mark.parametrize("capability,kernel", [
    (None, "sparsek_select_attention_wgmma"),
    ((9, 0), "sparsek_select_attention_wgmma"),
    ((10, 0), "sparsek_select_attention_tiles"),  # the mma.sync kernel
])
def test_default_pipeline_takes_the_chips_tile_kernel(device, capability, kernel):
    require_compiler()
    device(capability)
    assert _tile_kernels(gpu.default_pipeline("format=isa")) == [kernel]


def test_explicit_kernels_stay_selectable(device):
    require_compiler()
    device((9, 0))
    assert _tile_kernels(gpu.default_pipeline("format=isa prefill-kernel=mma-sync")) == [
        "sparsek_select_attention_tiles"]
    assert _tile_kernels(gpu.default_pipeline("format=isa prefill-kernel=loops")) == []
    with pytest.raises(compiler.CompilerError, match=re.escape(
            "option chip must be sm_90a with prefill-kernel=wgmma (Hopper wgmma instructions), "
            "got 'sm_90'")):
        compiler.run_pipeline(TILED, gpu.default_pipeline("format=isa chip=sm_90 prefill-kernel=wgmma"))
