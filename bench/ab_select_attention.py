# A/B of compiled select_attention_wgmma bench libraries (bench/build_bench_artifacts.py
# families built from different commits into different folders): the same inputs
# through each, output vs the first
# (max abs diff, fraction of elements over 2e-2, NaN count), median of 10 CUDA-event
# timings of the whole call. On the GPU machine:
#   python3 bench/ab_select_attention.py DIR_A,DIR_B[,...]
import os, sys, torch
arts = sys.argv[1].split(",")
form = "wgmma"
sys.path.insert(0, os.path.join(arts[0], "python"))
from sparsek.gpu import GPULibrary
shapes = {"P1-32k": (1, 32, 8, 128, 2048, 512, 32768), "P1-8k": (1, 32, 8, 128, 2048, 512, 8192),
          "P3": (8, 12, 12, 64, 256, 256, 4096)}
libs = [GPULibrary(os.path.join(a, f"libbench_select_attention_{form}.so")) for a in arts]
for name, (B, Hq, Hkv, D, k, w, T) in shapes.items():
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, Hq, T, D, device="cuda", generator=g).bfloat16()
    key = torch.randn(B, Hkv, T, D, device="cuda", generator=g).bfloat16()
    value = torch.randn(B, Hkv, T, D, device="cuda", generator=g).bfloat16()
    u = torch.randn(B, Hkv, T, device="cuda", generator=g) * 2
    fn = f"select_attention_bf16_k{k}_w{w}_{form}"
    outs = []
    for a, lib in zip(arts, libs):
        out = torch.empty(B, Hq, T, D, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            lib.call(fn, q, key, value, u, out)
        torch.cuda.synchronize()
        ts = []
        for _ in range(10):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); lib.call(fn, q, key, value, u, out); e.record(); torch.cuda.synchronize()
            ts.append(s.elapsed_time(e))
        ts.sort()
        outs.append(out.float())
        d = (out.float() - outs[0]).abs()
        print(f"{name:7s} {a:12s} median {ts[5]:.3f} ms  min {ts[0]:.3f}  maxdiff {d.max().item():.3e}  frac>2e-2 {(d > 2e-2).float().mean().item():.2e}  nan {torch.isnan(out.float()).sum().item()}", flush=True)
    del q, key, value, u, outs
    torch.cuda.empty_cache()
