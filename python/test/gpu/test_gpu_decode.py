# Compiled sparsek.decode_attention on the GPU over the runtime's slot layout:
# a batch of sequences at different positions, against the reference and the
# full recompute after token-by-token appends.
import numpy as np
import pytest

from sparsek import reference


def caches(seed, lengths, Hkv, k, w, spread=1.0, D=64):
    g = np.random.default_rng(seed)
    out = []
    for n in lengths:
        c = reference.DecodeCache(Hkv, k, w)
        hist = []
        for _ in range(n):
            kv = (g.normal(size=(Hkv, D)), g.normal(size=(Hkv, D)), g.normal(size=Hkv) * spread)
            c.append(*kv)
            hist.append(kv)
        out.append((c, hist))
    return out


def run_decode(torch, gpu_lib, manifest, elem, k, w, q, slots):
    D = q.shape[-1]
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[elem]
    dev = lambda a, t: torch.from_numpy(np.ascontiguousarray(a)).cuda().to(t)  # noqa: E731
    args = [dev(q, dtype),
            dev(np.stack([s.kslots for s in slots]), dtype),
            dev(np.stack([s.vslots for s in slots]), dtype),
            dev(np.stack([s.slot_scores for s in slots]), torch.float32),
            dev(np.stack([s.tau for s in slots]), torch.float32),
            dev(np.stack([s.pool_count for s in slots]), torch.int32),
            dev(np.array([s.pos for s in slots]), torch.int64)]
    out = torch.empty(q.shape[0], q.shape[1], D, dtype=dtype, device="cuda")
    gpu_lib.call(manifest["decode"][f"{elem}/{k}/{w}/{D}"], *args, out)
    torch.cuda.synchronize()
    return out.float().cpu().numpy(), [a.float().cpu().numpy() for a in args]


@pytest.mark.parametrize("elem", ["f32", "bf16", "f16"])
@pytest.mark.parametrize("k,w,Hq,Hkv,lengths", [
    (8, 4, 4, 2, [1, 5, 13, 40]),     # positions in the window, pool filling, full
    (64, 16, 8, 2, [100, 3, 257]),    # G = 4, two splits
    (0, 8, 2, 2, [1, 30]),            # k = 0: window only
    (16, 0, 8, 1, [1, 10, 50]),       # w = 0: pool only, G = 8
    (60, 4, 3, 3, [2, 63, 64, 200]),  # k + w = one split exactly, G = 1
    (100, 29, 16, 2, [1, 64, 65, 129, 500]),  # three splits, the last one short; G = 8
])
@pytest.mark.parametrize("D", [64, 128])
def test_decode_batch_matches_reference(torch, gpu_lib, manifest, elem, k, w, Hq, Hkv, lengths, D):
    cs = caches(k + w + len(lengths), lengths, Hkv, k, w, D=D)
    slots = [c.slots() for c, _ in cs]
    q = np.random.default_rng(1).normal(size=(len(lengths), Hq, D))
    out, (rq, rk, rv, sc, tau, cnt, pos) = run_decode(torch, gpu_lib, manifest, elem, k, w, q, slots)
    want = reference.decode_attention(rq, rk, rv, sc, tau, cnt.astype(np.int64), pos.astype(np.int64), k, w)
    np.testing.assert_allclose(out, want, atol=1e-4 if elem == "f32" else 2e-2, rtol=1e-4)


def test_decode_equals_full_recompute(torch, gpu_lib, manifest):
    k, w, Hq, Hkv = 8, 4, 4, 2
    (cache, hist), = caches(5, [60], Hkv, k, w, spread=0.3)
    q = np.random.default_rng(2).normal(size=(1, Hq, 64))
    out, _ = run_decode(torch, gpu_lib, manifest, "f32", k, w, q, [cache.slots()])
    K = np.stack([h[0] for h in hist], 1)[None]
    V = np.stack([h[1] for h in hist], 1)[None]
    U = np.stack([h[2] for h in hist], 1)[None]
    want = reference.sparsek_attention(q[:, :, None], K, V, U, k, w)[:, :, 0]
    np.testing.assert_allclose(out, want, atol=1e-4, rtol=1e-4)
