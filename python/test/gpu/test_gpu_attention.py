# Compiled sparsek.attention kernels on the GPU against the reference (SPEC 8)
# and, for k >= S, against torch's scaled_dot_product_attention.
import numpy as np
import pytest

from gpu_checks import assert_matches_sdpa
from sparsek import reference
from sparsek.status import MISALIGNED, QUERIES_EXCEED_KEYS, SparseKError

D = 64


def make_inputs(seed, B, Hq, Hkv, T, S, k, w, masked=0.0):
    g = np.random.default_rng(seed)
    q = g.normal(size=(B, Hq, T, D)).astype(np.float32)
    key = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    value = g.normal(size=(B, Hkv, S, D)).astype(np.float32)
    u = (g.normal(size=(B, Hkv, S)) * 2).astype(np.float64)
    if masked:
        u[g.random(u.shape) < masked] = -np.inf
    idx, gates, _ = reference.select(u, k, w, T)
    return q, key, value, idx.astype(np.int32), gates.astype(np.float32), u


def run_attention(torch, gpu_lib, manifest, elem, w, q, key, value, idx, gates):
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[elem]
    dev = [torch.from_numpy(a).cuda().to(dtype) for a in (q, key, value)]
    ti, tg = torch.from_numpy(idx).cuda(), torch.from_numpy(gates).cuda()
    out = torch.empty(q.shape[:3] + (value.shape[3],), dtype=dtype, device="cuda")
    gpu_lib.call(manifest["attention"][f"{elem}/{w}/{D}"], *dev, ti, tg, out)
    torch.cuda.synchronize()
    rounded = [t.float().cpu().numpy() for t in dev]
    return out.float().cpu().numpy(), rounded


SHAPES = [  # B, Hq, Hkv, T, S, k, w
    (1, 1, 1, 1, 1, 4, 3),       # T = 1
    (2, 4, 4, 96, 96, 8, 16),    # G = 1
    (1, 8, 2, 70, 200, 16, 16),  # G = 4, cached prefix S > T
    (1, 4, 1, 50, 50, 4, 64),    # w >= T
    (1, 4, 2, 120, 120, 1, 0),   # w = 0
    (3, 4, 2, 33, 65, 8, 3),     # several batches, odd sizes
]


@pytest.mark.parametrize("elem", ["f32", "bf16", "f16"])
@pytest.mark.parametrize("shape", SHAPES)
def test_attention_matches_reference(torch, gpu_lib, manifest, elem, shape):
    B, Hq, Hkv, T, S, k, w = shape
    q, key, value, idx, gates, _ = make_inputs(hash(shape) % 1000, B, Hq, Hkv, T, S, k, w, masked=0.1)
    out, (rq, rk, rv) = run_attention(torch, gpu_lib, manifest, elem, w, q, key, value, idx, gates)
    if elem == "f32":
        want = reference.attention(q, key, value, idx, gates, w)
        np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)
    else:  # SPEC 8: float32 reference on the same rounded inputs, 2e-2
        want = reference.attention(rq, rk, rv, idx, gates, w)
        np.testing.assert_allclose(out, want, atol=2e-2)


@pytest.mark.parametrize("elem", ["f32", "bf16", "f16"])
@pytest.mark.parametrize("B,Hq,Hkv,T,S", [(1, 4, 4, 128, 128), (2, 8, 2, 64, 192), (1, 8, 2, 100, 100)])
def test_k_at_least_s_equals_sdpa(torch, gpu_lib, manifest, elem, B, Hq, Hkv, T, S):
    w = 16
    q, key, value, idx, gates, _ = make_inputs(S + T, B, Hq, Hkv, T, S, S, w)
    out, (rq, rk, rv) = run_attention(torch, gpu_lib, manifest, elem, w, q, key, value, idx, gates)
    assert_matches_sdpa(torch, out, rq, rk, rv, elem)


def test_more_queries_than_keys_is_an_error(torch, gpu_lib, manifest):
    q = torch.zeros(1, 1, 9, D, device="cuda")
    kv = torch.zeros(1, 1, 8, D, device="cuda")
    idx = torch.zeros(1, 1, 9, 2, dtype=torch.int32, device="cuda")
    gates = torch.zeros(1, 1, 9, 2, device="cuda")
    out = torch.zeros(1, 1, 9, D, device="cuda")
    with pytest.raises(SparseKError) as e:
        gpu_lib.call(manifest["attention"][f"f32/3/{D}"], q, kv, kv, idx, gates, out)
    assert e.value.code == QUERIES_EXCEED_KEYS


@pytest.mark.parametrize("operand", ["q", "value", "out"])
def test_misaligned_rows_are_an_error(torch, gpu_lib, manifest, operand):
    # The kernels read rows as 16-byte vectors: a contiguous view whose data
    # starts 4 bytes into an allocation is rejected with a status, and
    # nothing is written (the CUDA context stays usable).
    def tensor(*shape, misaligned=False):
        n = int(np.prod(shape))
        base = torch.randn(n + 1, device="cuda")
        return (base[1:] if misaligned else base[:n]).view(*shape)
    q = tensor(1, 2, 8, D, misaligned=operand == "q")
    key = tensor(1, 2, 8, D)
    value = tensor(1, 2, 8, D, misaligned=operand == "value")
    out = tensor(1, 2, 8, D, misaligned=operand == "out")
    before = out.clone()
    idx = torch.full((1, 2, 8, 2), -1, dtype=torch.int32, device="cuda")
    gates = torch.zeros(1, 2, 8, 2, device="cuda")
    with pytest.raises(SparseKError) as e:
        gpu_lib.call(manifest["attention"][f"f32/3/{D}"], q, key, value, idx, gates, out)
    assert e.value.code == MISALIGNED
    torch.cuda.synchronize()
    assert torch.equal(out, before)
    # Aligned copies work afterwards.
    out = torch.zeros(1, 2, 8, D, device="cuda")
    gpu_lib.call(manifest["attention"][f"f32/3/{D}"], q.clone(), key, value.clone(), idx, gates, out)
    torch.cuda.synchronize()


@pytest.mark.parametrize("side_stream", [False, True])
def test_runs_after_the_callers_earlier_work(torch, gpu_lib, manifest, side_stream):
    # The kernels run on the caller's stream, torch's legacy default stream
    # included, so they see what was queued there before the call: here q is
    # written ~20 ms late, behind a GPU sleep.
    q, key, value, idx, gates, _ = make_inputs(7, 1, 4, 2, 64, 64, 8, 16)
    stream = torch.cuda.Stream() if side_stream else torch.cuda.current_stream()
    with torch.cuda.stream(stream):
        src = torch.from_numpy(q).cuda()
        kd, vd = torch.from_numpy(key).cuda(), torch.from_numpy(value).cuda()
        ti, tg = torch.from_numpy(idx).cuda(), torch.from_numpy(gates).cuda()
        torch.cuda.synchronize()
        qd = torch.zeros_like(src)
        out = torch.zeros_like(src)
        torch.cuda._sleep(40_000_000)
        qd.copy_(src)
        gpu_lib.call(manifest["attention"][f"f32/16/{D}"], qd, kd, vd, ti, tg, out)
    torch.cuda.synchronize()
    want = reference.attention(q, key, value, idx, gates.astype(np.float64), 16)
    np.testing.assert_allclose(out.cpu().numpy(), want, atol=1e-4, rtol=1e-4)
