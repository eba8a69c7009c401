# decode_attention on the tile-first kernel (sparsek-gpu-pipeline{decode-kernel=tiles}:
# one block per (sequence, KV head, split of the slots), the G query heads
# sharing 16-byte K/V loads, the splits merged in the same launch by the last
# block to arrive), on CUDA cores and on tensor cores (decode-kernel=tiles-mma;
# the fixture runs every test on both) over the slot layout of the runtime: several sequences at
# different positions, pools filling and full, k = 0, w = 0, G in {1, 2, 3,
# 4, 8} with static head counts and G in 1..8 (and the loops beyond) through
# the run-time switch over G, D in {64, 128}, bf16 and f16, split
# boundaries, and the issue's shape. SPEC 8: the float64 reference on
# the same rounded inputs, 2e-2 absolute. Graph capture replays equal eager
# calls: the launch allocates only stream-ordered scratch and its split
# counters are reset by the kernel.
import numpy as np
import pytest

from sparsek import reference

ELEMENTS = ("bf16", "f16")


def caches(seed, lengths, Hkv, k, w, D, spread=1.0):
    g = np.random.default_rng(seed)
    out = []
    for n in lengths:
        c = reference.DecodeCache(Hkv, k, w)
        for _ in range(n):
            c.append(g.normal(size=(Hkv, D)), g.normal(size=(Hkv, D)), g.normal(size=Hkv) * spread)
        out.append(c.slots())
    return out


def device_args(torch, elem, q, slots):
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[elem]
    dev = lambda a, t: torch.from_numpy(np.ascontiguousarray(a)).cuda().to(t)  # noqa: E731
    return [dev(q, dtype),
            dev(np.stack([s.kslots for s in slots]), dtype),
            dev(np.stack([s.vslots for s in slots]), dtype),
            dev(np.stack([s.slot_scores for s in slots]), torch.float32),
            dev(np.stack([s.tau for s in slots]), torch.float32),
            dev(np.stack([s.pool_count for s in slots]), torch.int32),
            dev(np.array([s.pos for s in slots]), torch.int64)]


def expected(args, k, w):
    rq, rk, rv, sc, tau, cnt, pos = (a.float().cpu().numpy() if a.is_floating_point()
                                     else a.cpu().numpy() for a in args)
    return reference.decode_attention(rq, rk, rv, sc, tau, cnt.astype(np.int64),
                                      pos.astype(np.int64), k, w)


def function(manifest, elem, k, w, D, Hq, Hkv, dynamic=False):
    heads = "dyn" if dynamic else f"{Hq}x{Hkv}"
    return manifest["decode_tiles"][f"{elem}/{k}/{w}/{D}/{heads}"]


def call(torch, lib, name, args):
    out = torch.full_like(args[0], 7.0)
    lib.call(name, *args, out)
    return out


def check(torch, lib, manifest, elem, k, w, Hq, Hkv, lengths, D, seed=0, dynamic=False):
    slots = caches(seed + k + w + len(lengths) + D, lengths, Hkv, k, w, D)
    q = np.random.default_rng(seed + 1).normal(size=(len(lengths), Hq, D))
    args = device_args(torch, elem, q, slots)
    out = call(torch, lib, function(manifest, elem, k, w, D, Hq, Hkv, dynamic), args)
    torch.cuda.synchronize()
    np.testing.assert_allclose(out.float().cpu().numpy(), expected(args, k, w), atol=2e-2)
    return args, out


@pytest.mark.parametrize("elem", ELEMENTS)
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("k,w,Hq,Hkv,lengths", [
    (8, 4, 4, 2, [1, 5, 13, 40]),            # positions in the window, pool filling, full; G = 2
    (64, 16, 8, 2, [100, 3, 257]),           # G = 4
    (0, 8, 2, 2, [1, 30]),                   # k = 0: window only, G = 1
    (16, 0, 8, 1, [1, 10, 50]),              # w = 0: pool only, G = 8
    (60, 4, 3, 3, [2, 63, 64, 200]),         # G = 1
    (100, 29, 16, 2, [1, 64, 65, 129, 500]),  # two splits, G = 8
    (300, 60, 12, 4, [1, 70, 200, 359, 900]),  # five splits, G = 3
    (300, 60, 32, 4, [2, 500]),              # G = 8 over several splits
])
def test_batch_matches_reference(torch, gpu_decode_tiles_lib, manifest, elem, k, w, Hq, Hkv,
                                 lengths, D):
    check(torch, gpu_decode_tiles_lib, manifest, elem, k, w, Hq, Hkv, lengths, D)


# Split boundaries: one sequence, one KV head (the most splits), valid slot
# counts around multiples of the split length and of a warp's iteration.
@pytest.mark.parametrize("length", [1, 63, 64, 65, 127, 128, 129, 300, 359, 1000])
def test_split_boundaries(torch, gpu_decode_tiles_lib, manifest, length):
    check(torch, gpu_decode_tiles_lib, manifest, "bf16", 300, 60, 4, 1, [length], 128)


# Head counts known only at run time: the kernel for G picked by an
# scf.index_switch; G beyond 8 takes the loop kernel (the switch's default).
@pytest.mark.parametrize("Hq,Hkv", [(2, 2), (6, 2), (10, 2), (16, 2), (24, 2)])
def test_run_time_group(torch, gpu_decode_tiles_lib, manifest, Hq, Hkv):
    check(torch, gpu_decode_tiles_lib, manifest, "bf16", 64, 16, Hq, Hkv, [5, 90, 3], 64,
          dynamic=True)


# The issue's shape (k = 2048, w = 512, D = 128, Hq = 32, Hkv = 8): B = 1
# takes the most splits, B = 3 fewer; pools full and filling.
@pytest.mark.parametrize("lengths", [[3000], [100, 1500, 4000]])
def test_issue_shape(torch, gpu_decode_tiles_lib, manifest, lengths):
    check(torch, gpu_decode_tiles_lib, manifest, "bf16", 2048, 512, 32, 8, lengths, 128)


def test_same_as_the_loop_kernel(torch, gpu_lib, gpu_decode_tiles_lib, manifest):
    args, out = check(torch, gpu_decode_tiles_lib, manifest, "bf16", 100, 29, 16, 2,
                      [1, 64, 65, 129, 500], 128)
    loops = torch.full_like(out, 7.0)
    gpu_lib.call(manifest["decode"]["bf16/100/29/128"], *args, loops)
    torch.cuda.synchronize()
    torch.testing.assert_close(out.float(), loops.float(), atol=2e-2, rtol=0)


# Captured once, replayed over new inputs copied into the captured buffers:
# each replay equals an eager call on the same inputs (bit for bit: the same
# kernel, the same split count), including the split merge, whose counters
# the last block resets for the next replay.
@pytest.mark.parametrize("lengths", [[3, 250], [359] * 40])
def test_graph_replay_equals_eager(torch, gpu_decode_tiles_lib, manifest, lengths):
    k, w, Hq, Hkv, D, elem = 300, 60, 8, 2, 128, "bf16"
    lib = gpu_decode_tiles_lib
    steps = []
    for step in range(4):
        slots = caches(10 + step, [n + step for n in lengths], Hkv, k, w, D)
        q = np.random.default_rng(20 + step).normal(size=(len(lengths), Hq, D))
        steps.append(device_args(torch, elem, q, slots))
    static = [a.clone() for a in steps[0]]
    static_out = torch.zeros_like(static[0])
    name = function(manifest, elem, k, w, D, Hq, Hkv)
    lib.call(name, *static, static_out)  # warm-up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        lib.call(name, *static, static_out)
    for args in steps + steps[::-1]:
        for dst, src in zip(static, args):
            dst.copy_(src)
        graph.replay()
        eager = call(torch, lib, name, args)
        torch.cuda.synchronize()
        torch.testing.assert_close(static_out, eager, rtol=0, atol=0)
        np.testing.assert_allclose(eager.float().cpu().numpy(), expected(args, k, w), atol=2e-2)
