# Device memory running out inside compiled GPU code: the call reports OUT_OF_MEMORY and writes nothing.
"""sparsek-gpu-scratch-arena gives the fused select_attention's scratch one
device allocation (the runtime's stream-ordered pool, mgpuMemAlloc), made
after the window-score check and before any kernel that writes the output.
Where it fails, the rest of the block is skipped and the entry point returns
SPARSEK_ERROR_OUT_OF_MEMORY: no kernel may run on a null scratch pointer,
which would be an illegal address and end the process's CUDA context.

Nothing else in the suite reaches that path: it needs the device full. The
test fills it with torch tensors, calls with a row long enough that the
scratch cannot come from what the pool kept of earlier calls (it keeps
freed memory), then frees them and calls again.
"""
import ctypes

import numpy as np
import pytest

from sparsek import reference
from sparsek.status import OUT_OF_MEMORY, SparseKError

K, W, D = 64, 16, 64
# Hq = Hkv = 8, the last 4096 of 131072 positions. The chunked selection
# (ChunkedSelection.cpp) sizes a chunk's band for every candidate of the row:
# rows x chunks x (S - w) f32, with 128 chunks past 16384 candidates, so
# 8 x 128 x 131056 x 4 B = 512 MiB; with the lists, sorted scores, search
# and per-query buffers the arena is about 580 MiB. The largest scratch of
# the rest of the suite is about 50 MiB (the 16-candidate chunk libraries at
# S = 4200). The inputs and output take 268 MiB, the call a few milliseconds.
B, H, T, S = 1, 8, 4096, 131072
BAND_BYTES = H * 128 * (S - W) * 4


def make_inputs(torch, T, S, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)

    def normal(*shape, dtype=torch.bfloat16):
        return torch.randn(*shape, generator=g, device="cuda", dtype=dtype)

    q, key, value = normal(B, H, T, D), normal(B, H, S, D), normal(B, H, S, D)
    u = normal(B, H, S, dtype=torch.float32) * 2
    out = torch.full((B, H, T, D), float("nan"), dtype=torch.bfloat16, device="cuda")
    return [q, key, value, u, out]


def fill_device_memory(torch):
    """Torch tensors holding the device's free memory, to the last MB or two:
    1 GiB pieces, halved each time one no longer fits."""
    torch.cuda.empty_cache()
    ballast, size = [], 1 << 30
    while size >= 1 << 20:
        try:
            ballast.append(torch.empty(size, dtype=torch.uint8, device="cuda"))
        except torch.cuda.OutOfMemoryError:
            size //= 2
    return ballast


def runtime_error(lib):
    """The error the runtime has recorded (status, message); (0, "") if none."""
    buf = ctypes.create_string_buffer(512)
    return lib.runtime.sk_rt_get_last_error(buf, len(buf)), buf.value.decode(errors="replace")


def test_scratch_that_cannot_be_allocated_is_reported(torch, gpu_auto_lib, manifest):
    lib = gpu_auto_lib
    name = manifest.get("auto_select_attention", {}).get(f"bf16/{K}/{W}/{D}")
    if name is None or not lib.has(name):
        pytest.skip("the GPU artifacts lack the bf16 fused select_attention (rebuild them)")
    # A small call first: what the first call sets up (the library's status
    # words, the runtime's streams, the kernels' local memory) is made now,
    # not under pressure.
    small = make_inputs(torch, 256, 256, seed=1)
    lib.call(name, *small, check=True)
    assert torch.isfinite(small[-1]).all()
    args = make_inputs(torch, T, S, seed=2)
    out = args[-1]
    torch.cuda.synchronize()

    ballast = fill_device_memory(torch)
    try:
        free, _ = torch.cuda.mem_get_info()
        assert free < BAND_BYTES // 2, f"{free >> 20} MiB still free: the scratch could fit"
        with pytest.raises(SparseKError) as e:
            lib.call(name, *args, check=True)
        left = runtime_error(lib)
    finally:
        ballast.clear()
        torch.cuda.empty_cache()
        # The runtime's record is process-wide: a failing assertion below
        # must not leave it to the next test's first call.
        lib.runtime.sk_rt_clear_error()

    assert e.value.code == OUT_OF_MEMORY
    assert str(e.value) == str(SparseKError(OUT_OF_MEMORY, name))
    # Only the window-score check runs before the arena's allocation; the
    # tiles, the sole writers of the output, come after it.
    torch.cuda.synchronize()
    assert torch.isnan(out).all()
    assert lib.device_status() == 0

    # Memory back: the same call runs, and its rows are right. The last two
    # queries of head 0 against the reference alone (their selection spans
    # the whole row; the full reference would take minutes).
    lib.call(name, *args, check=True)
    assert torch.isfinite(out).all()
    q, key, value = (a[:, :1].float().cpu().numpy() for a in args[:3])
    u = args[3][:, :1].double().cpu().numpy()
    want = reference.sparsek_attention(q[:, :, -2:], key, value, u, K, W)
    np.testing.assert_allclose(out[:, :1, -2:].float().cpu().numpy(), want, atol=2e-2)

    # The call that raised reported the failed allocation; the runtime's own
    # record of it (cuMemAllocFromPoolAsync's CUDA_ERROR_OUT_OF_MEMORY) must
    # not stay behind, or the next call of any library raises it again as a
    # GPUError.
    assert left == (0, ""), f"the runtime kept the failed allocation's error: {left}"
