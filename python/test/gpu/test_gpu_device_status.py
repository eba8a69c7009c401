# The device status on the GPU: kernels report NaN/+inf scores and bad decode cache states with the CPU path's codes, asynchronously, without a host synchronization per call.
"""Invalid data is found by the kernels after the entry point returned, so it
is reported like CUDA's own kernel faults: in the library's device status,
raised as the SparseKError the CPU path raises (same code, same message) by
`check()` / `call(check=True)` (synchronizing), or without synchronizing by
the next call once the kernels have finished. The same semantics are checked
on the CPU form in python/test/test_cpu_device_status.py."""
import numpy as np
import pytest

from device_status_cases import ARG_INDEX, TILE_CASES, assert_other_heads_kept, case_value
from sparsek import reference
from sparsek.status import INVALID_CACHE_STATE, INVALID_SCORE, SparseKError

from test_gpu_decode import caches
import test_gpu_decode_tiles as tiles


@pytest.fixture(autouse=True)
def clear_libraries(request):
    """A test that fails halfway leaves no error behind for the next test
    that calls the same (session-wide) library."""
    yield
    for name in request.fixturenames:
        if name.endswith("_lib"):
            request.getfixturevalue(name).clear_device_status()


def cuda(torch, a, dtype=None):
    t = torch.from_numpy(np.ascontiguousarray(a)).cuda()
    return t if dtype is None else t.to(dtype)


def select_args(torch, u, k, T):
    B, H, _ = u.shape
    return [cuda(torch, u), torch.zeros(B, H, T, k, dtype=torch.int32, device="cuda"),
            torch.zeros(B, H, T, k, device="cuda"), torch.zeros(B, H, T, device="cuda")]


def expect(lib, name, args, code, **kw):
    """The call (checked) raises `code` with the CPU path's message for `name`."""
    with pytest.raises(SparseKError) as e:
        lib.call(name, *args, check=True, **kw)
    assert e.value.code == code
    assert str(e.value) == str(SparseKError(code, name))
    assert lib.device_status() == 0  # reported once, then cleared


# Candidate positions (the chunked selection's kernels) and window-only
# ones (a kernel of their own). With k = 0 the select canonicalizes to
# tau = +inf and reads no score, on the CPU path too: nothing to report.
@pytest.mark.parametrize("k,w,pos", [(8, 4, 3), (8, 4, 78), (16, 16, 70), (1, 0, 79), (0, 8, 10)])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_select_reports_nan_and_inf(torch, gpu_lib, manifest, k, w, pos, bad):
    u = np.random.default_rng(pos).normal(size=(2, 2, 80)).astype(np.float32)
    u[1, 0, pos] = bad
    name, args = manifest["select"][f"{k}/{w}"], select_args(torch, u, k, 80)
    if k == 0:
        gpu_lib.call(name, *args, check=True)
        assert torch.all(args[3] == float("inf"))
        return
    expect(gpu_lib, name, args, INVALID_SCORE)


def composite_args(torch, u, dtype, T=None, Hq=4, D=64):
    g = np.random.default_rng(1)
    B, Hkv, S = u.shape
    T = S if T is None else T
    q = cuda(torch, g.normal(size=(B, Hq, T, D)), dtype)
    key, value = (cuda(torch, g.normal(size=(B, Hkv, S, D)), dtype) for _ in range(2))
    return [q, key, value, cuda(torch, u), torch.zeros_like(q)]


# The fused composite (its selection and window-score kernels), the
# decomposed one (select kernels, then attention) and the tile-first
# prefill (mma-sync: the block key sets run the chunked selection;
# wgmma_rows: the row selection).
@pytest.mark.parametrize("which", ["fused", "decomposed", "mma_sync", "wgmma_rows"])
@pytest.mark.parametrize("pos", [2, 60, 95])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_select_attention_reports_nan_and_inf(torch, manifest, request, which, pos, bad):
    u = np.random.default_rng(pos).normal(size=(1, 2, 96)).astype(np.float32)
    u[0, 1, pos] = bad
    if which in ("mma_sync", "wgmma_rows"):   # the chunked selection; the row selection
        lib = request.getfixturevalue(f"gpu_{which}_lib")
        name, dtype = manifest[f"{which}_select_attention"]["bf16/8/4/64"], torch.bfloat16
    else:
        lib = request.getfixturevalue("gpu_lib" if which == "fused" else "gpu_decomposed_lib")
        name, dtype = manifest["select_attention"]["f32/8/4/64"], torch.float32
    expect(lib, name, composite_args(torch, u, dtype), INVALID_SCORE)


def decode_args(torch, k=8, w=4, Hq=4, Hkv=2, lengths=(1, 9, 40)):
    slots = [c.slots() for c, _ in caches(3, lengths, Hkv, k, w)]
    q = np.random.default_rng(2).normal(size=(len(lengths), Hq, 64))
    host = [q, np.stack([s.kslots for s in slots]), np.stack([s.vslots for s in slots]),
            np.stack([s.slot_scores for s in slots]), np.stack([s.tau for s in slots]),
            np.stack([s.pool_count for s in slots]), np.array([s.pos for s in slots])]
    types = [torch.float32] * 5 + [torch.int32, torch.int64]
    dev = [cuda(torch, a, t) for a, t in zip(host, types)]
    return host, dev + [torch.zeros(len(lengths), Hq, 64, device="cuda")]


def decode_reference(host, k=8, w=4):
    q, ks, vs, sc, tau, cnt, pos = host
    return reference.decode_attention(q, ks, vs, sc, tau, cnt.astype(np.int64), pos.astype(np.int64),
                                      k, w)


@pytest.mark.parametrize("what,index,value,code", [
    ("pool_count", 5, 9, INVALID_CACHE_STATE),     # more than k = 8
    ("pool_count", 5, -3, INVALID_CACHE_STATE),
    ("pos", 6, -1, INVALID_CACHE_STATE),
    ("slot_scores", 3, float("nan"), INVALID_SCORE),
    ("slot_scores", 3, float("inf"), INVALID_SCORE),
    ("tau", 4, float("nan"), INVALID_SCORE),
])
def test_decode_reports_bad_cache_states(torch, gpu_lib, manifest, what, index, value, code):
    _, args = decode_args(torch)
    # The long sequence (its pools are full): its last head, its position, or
    # a pool slot in use (window slots' scores are never read).
    at = {"pool_count": (2, 1), "pos": (2,), "slot_scores": (2, 1, 0), "tau": (2, 1)}[what]
    args[index][at] = value
    expect(gpu_lib, manifest["decode"]["f32/8/4/64"], args, code)


def test_pending_error_raises_at_the_next_call_then_calls_run_clean(torch, gpu_lib, manifest):
    name = manifest["decode"]["f32/8/4/64"]
    host, args = decode_args(torch)
    bad = [a.clone() for a in args]
    bad[5][1, 0] = 1 << 20   # a pool count far past k + w: no slot read out of range
    gpu_lib.call(name, *bad)  # queued; nothing raised yet
    torch.cuda.synchronize()
    assert gpu_lib.device_status() == INVALID_CACHE_STATE  # readable without synchronizing
    with pytest.raises(SparseKError) as e:
        gpu_lib.call(name, *args)  # raised before this call runs
    assert e.value.code == INVALID_CACHE_STATE
    assert gpu_lib.device_status() == 0
    gpu_lib.call(name, *args, check=True)
    np.testing.assert_allclose(args[-1].cpu().numpy(), decode_reference(host), atol=1e-4, rtol=1e-4)
    # The bad call skipped only the bad head: the others are right.
    out, want = bad[-1].cpu().numpy(), decode_reference(host)
    mask = np.ones(out.shape[:2], bool)
    mask[1, :2] = False
    np.testing.assert_allclose(out[mask], want[mask], atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(out[1, :2], 0)


def test_eager_calls_do_not_synchronize(torch, gpu_lib, manifest):
    """Calls queued behind a long kernel return while it still runs: neither
    the call nor its status read waits for the GPU."""
    name = manifest["decode"]["f32/8/4/64"]
    _, args = decode_args(torch)
    gpu_lib.call(name, *args, check=True)   # warm (module load, status words)
    torch.cuda._sleep(2_000_000_000)        # about a second of GPU time
    before = torch.cuda.Event()
    before.record()                         # done only once the sleep is
    for _ in range(3):
        gpu_lib.call(name, *args)
        assert gpu_lib.device_status() == 0
    assert not before.query(), "a call waited for the stream"
    gpu_lib.check()


def test_decode_captured_in_a_cuda_graph_replays_and_reports(torch, gpu_lib, manifest):
    name = manifest["decode"]["f32/8/4/64"]
    host, args = decode_args(torch)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        gpu_lib.call(name, *args)          # warm-up, eager
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        gpu_lib.call(name, *args)
    args[-1].zero_()
    graph.replay()
    gpu_lib.check()
    want = decode_reference(host)
    np.testing.assert_allclose(args[-1].cpu().numpy(), want, atol=1e-4, rtol=1e-4)
    # A bad cache state in the graph's inputs: the replayed kernels report it.
    good_count = args[5].clone()
    args[5][0, 1] = -1
    graph.replay()
    with pytest.raises(SparseKError) as e:
        gpu_lib.check()
    assert e.value.code == INVALID_CACHE_STATE
    args[5].copy_(good_count)
    graph.replay()
    gpu_lib.check()
    np.testing.assert_allclose(args[-1].cpu().numpy(), want, atol=1e-4, rtol=1e-4)


# The tile-first decode kernel (decode-kernel=tiles) reports at the loop
# form's check points with its codes: thread 0 of each block the cache state
# and tau of its (b, h), each lane the invalid pool scores it skipped. One
# split (k + w = 12), several (k + w = 360 over 3 x 2 pairs) and the issue's
# shape (k = 2048, w = 512, D = 128, G = 4); the cases of
# device_status_cases.py, as on the CPU form.
TILE_FUNCTIONS = [(8, 4, 4, 2, 64, (1, 9, 40)), (300, 60, 8, 2, 64, (1, 9, 400)),
                  (2048, 512, 32, 8, 128, (3, 100, 3000))]


def tile_decode_args(torch, k, w, Hq, Hkv, D, lengths):
    slots = tiles.caches(5, lengths, Hkv, k, w, D)
    q = np.random.default_rng(6).normal(size=(len(lengths), Hq, D))
    return tiles.device_args(torch, "bf16", q, slots)


@pytest.mark.parametrize("k,w,Hq,Hkv,D,lengths", TILE_FUNCTIONS)
@pytest.mark.parametrize("what,value,at,code", TILE_CASES)
def test_tile_decode_reports_like_the_loop_form(torch, gpu_decode_tiles_lib, manifest, k, w, Hq,
                                                Hkv, D, lengths, what, value, at, code):
    lib = gpu_decode_tiles_lib
    name = tiles.function(manifest, "bf16", k, w, D, Hq, Hkv)
    args = tile_decode_args(torch, k, w, Hq, Hkv, D, lengths)
    assert int(args[5][2].min()) == k  # the long sequence's pools are full
    want = tiles.expected(args, k, w)
    bad = [a.clone() for a in args]
    bad[ARG_INDEX[what]][at] = case_value(value, k)
    out = torch.full_like(args[0], 7.0)
    expect(lib, name, bad + [out], code)
    assert_other_heads_kept(out.float().cpu().numpy(), want, what, at, Hq // Hkv, atol=2e-2)
    # Valid calls afterwards run clean.
    good = tiles.call(torch, lib, name, args)
    lib.check()
    np.testing.assert_allclose(good.float().cpu().numpy(), want, atol=2e-2)
