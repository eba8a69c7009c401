#!/usr/bin/env python3
# GPU benchmark of the compiled SparseK kernels against the baselines of
# ../shared/BENCHMARKS.md, all in one process: P1, P3 (prefill), S1
# (selection), D1 (decode). Writes one JSON record; honest numbers only.
"""SparseK GPU benchmark (issue 6 point 5): P1, P3, S1, D1 on the H200.

    python3 bench/gpu_bench.py --artifacts build/bench-artifacts --out DIR

Measures in one process, each after a correctness check (sampled query rows
against sparsek.reference at large T):
  prefill (P1, P3): our compiled attention (explicit indices and gates from
    the torch selection), our compiled select_attention from the scores in
    both lowerings (fused: the GPU pipeline's default; decomposed:
    fuse-select-attention=false), the Triton SparseK kernel
    (bench/triton_sparsek.py), dense causal SDPA (fastest of cuDNN / flash /
    efficient);
  S1 (T = 32768 and 131072): our compiled selection if the artifacts have it,
    torch.topk selection, each with the bytes it writes per second, and set
    against P1's attention times at the same T from the same run;
  D1: our compiled decode over the runtime slot layout, SDPA over the compact
    k + w cache with the gates multiplied into V, dense SDPA decode over the
    full 32k context.
Each workload runs in its own process (a CUDA fault loses only that one).
Timing: CUDA events around each call, an L2 flush (256 MiB write) and a
~1 ms GPU sleep queued before each start event (host launch overhead hidden),
5 warm-ups then the median of 20; fewer for configurations slower than the
per-configuration cap (recorded as `warmup`/`repeats`/`reduced`). Anything
predicted to blow the cap or the total budget is skipped with the reason.
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback

import numpy as np

try:
    import torch
except ImportError:  # `--help` and a syntax check work without torch; running needs it
    torch = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def _artifacts_arg():
    for i, x in enumerate(sys.argv):
        if x == "--artifacts" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if x.startswith("--artifacts="):
            return x.split("=", 1)[1]
    return os.path.join(ROOT, "build", "bench-artifacts")


# The artifacts carry the committed python/sparsek they were built with
# (build_bench_artifacts.sh): use it, not whatever the work tree holds now.
PY_PACKAGE = os.path.join(_artifacts_arg(), "python")
if os.path.isdir(os.path.join(PY_PACKAGE, "sparsek")):
    sys.path.insert(0, PY_PACKAGE)
else:
    PY_PACKAGE = os.path.join(ROOT, "python")

from sparsek import reference  # noqa: E402

triton_sparsek = None
if torch is not None:
    if "--smoke" in sys.argv and not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
    try:
        import triton_sparsek  # noqa: E402
    except ImportError:  # no triton: main() says so
        pass

DEV = "cuda"
DTYPE = torch.bfloat16 if torch is not None else None  # --smoke on a CPU: float16 (the Triton
# interpreter mishandles bf16)
TOL = 2e-2  # SPEC 8: bf16 inputs against the float32 reference on the same rounded inputs

# ----------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------

_FLUSH = None


def _prelude():
    _FLUSH.zero_()                 # evict L2 (60 MB on the H200)
    if DEV == "cuda":
        torch.cuda._sleep(2_000_000)   # ~1 ms of GPU time: the host queues the call meanwhile


def _empty_cache():
    if DEV == "cuda":
        torch.cuda.empty_cache()


class _WallEvent:  # --smoke without a GPU: wall-clock stand-in for torch.cuda.Event
    def record(self):
        self.t = time.perf_counter()

    def elapsed_time(self, other):
        return (other.t - self.t) * 1e3


def _sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, cap_s, warmup=5, repeats=20, est_ms=None):
    """Median device time (ms) of fn() by CUDA events. Reduces warm-ups and
    repeats when one call is slow (recorded). est_ms: the caller already made
    one call (a warm-up) that took about this long."""
    if DEV == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    else:
        start, end = _WallEvent(), _WallEvent()
    _sync()
    if est_ms is None:
        _prelude()
        start.record()
        fn()
        end.record()
        _sync()
        first = start.elapsed_time(end)  # the first warm-up, also an estimate
    else:
        first = est_ms
    info = {"first_call_ms": first}
    if first * 1e-3 * (warmup + repeats) > cap_s:
        warmup = 1 if first * 1e-3 * 4 <= cap_s else 0
        repeats = max(1, min(repeats, int(cap_s / max(first * 1e-3, 1e-9)) - warmup))
        info["reduced"] = (f"one call took {first:.1f} ms: {max(1, warmup)} warm-up(s), {repeats} timed "
                           f"(cap {cap_s:.0f} s)")
    for _ in range(max(0, warmup - 1)):
        fn()
    times = []
    for _ in range(repeats):
        _prelude()
        start.record()
        fn()
        end.record()
        _sync()
        times.append(start.elapsed_time(end))
    info.update({"median_ms": float(np.median(times)), "min_ms": float(np.min(times)),
                 "warmup": max(1, warmup), "repeats": repeats, "times_ms": [round(t, 5) for t in times]})
    return info


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


class Budget:
    def __init__(self, total_s, cap_s):
        self.t0 = time.time()
        self.total = total_s
        self.cap = cap_s

    def left(self):
        return self.total - (time.time() - self.t0)

    def cap_for(self):
        return max(1.0, min(self.cap, self.left() * 0.5))


def union_sizes(T, S, k, w):
    """sum_t |Win(t) U Sel(t)| with every candidate unmasked (random normal scores)."""
    pos = np.arange(S - T, S, dtype=np.int64)
    win = np.minimum(w, pos + 1)
    sel = np.minimum(k, np.maximum(pos - w + 1, 0))
    return int((win + sel).sum())


def dense_sizes(T, S):
    pos = np.arange(S - T, S, dtype=np.int64)
    return int((pos + 1).sum())


def sample_rows(T, n, seed):
    g = np.random.default_rng(seed)
    rows = set(int(x) for x in g.choice(T, size=min(n, T), replace=False))
    rows.update({T - 1, min(T - 1, 5)})
    return sorted(rows)


def err_rows(out, want_rows, rows):
    """Max abs error of out [B, H, T, D] (torch) at rows against want_rows
    {t: [B, H, D]}."""
    got = out[:, :, rows].float().cpu().numpy()
    return float(max(np.abs(got[:, :, i] - want_rows[t]).max() for i, t in enumerate(rows)))


def sdpa_backends():
    from torch.nn.attention import SDPBackend
    return [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION)]


def sdpa_call(backend, q, k, v, causal, expand):
    from torch.nn.attention import sdpa_kernel
    G = q.shape[1] // k.shape[1]
    if expand and G > 1 and 2 * k.numel() * k.element_size() * G > 24 * 2**30:
        raise RuntimeError("expanded K/V would need more than 24 GiB: not tried")
    if expand and G > 1:
        k = k.repeat_interleave(G, dim=1)
        v = v.repeat_interleave(G, dim=1)

    def fn():
        with sdpa_kernel([backend]):
            return torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=causal, enable_gqa=(not expand) and G > 1)
    return fn


def best_sdpa(q, k, v, causal, check, budget, label):
    """Times every SDPA backend that runs (GQA native first, else K/V
    expanded outside the timed call) and returns all results plus the fastest."""
    results = {}
    best = None
    for name, backend in sdpa_backends():
        for expand in (False, True):
            key = name + ("+expanded_kv" if expand else "")
            try:
                fn = sdpa_call(backend, q, k, v, causal, expand)
                out = fn()
                _sync()
                err = check(out)
                r = {"check_max_abs_err": err, "check_passed": err <= TOL}
                r.update(time_fn(fn, budget.cap_for()))
                r["kv_expanded_outside_timing"] = expand
                results[key] = r
                del out
                if r["check_passed"] and (best is None or r["median_ms"] < results[best]["median_ms"]):
                    best = key
                break  # native GQA worked: no need for the expanded variant
            except Exception as e:  # a backend that does not support the case
                results[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        _empty_cache()
    print(f"  {label}: " + ", ".join(f"{k} {v['median_ms']:.3f} ms" for k, v in results.items()
                                     if "median_ms" in v) + f" -> best {best}", flush=True)
    return results, best


class Ours:
    """Compiled functions from build/bench-artifacts (see build_bench_artifacts.py)."""

    def __init__(self, folder):
        from sparsek.gpu import GPULibrary
        with open(os.path.join(folder, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.libs, self.where, self.missing = {}, {}, {}
        for family, entry in self.manifest["families"].items():
            if "library" not in entry:
                self.missing[family] = entry.get("error", "not built")
                continue
            try:
                lib = GPULibrary(os.path.join(folder, entry["library"]))
            except OSError as e:
                self.missing[family] = f"could not load: {e}"
                continue
            for fn in entry["functions"]:
                self.where[fn] = lib

    def has(self, fn):
        return fn in self.where

    def call(self, fn, *args):
        self.where[fn].call(fn, *args)

    def lowering(self, family):
        """How the family was compiled (manifest.json): pipeline options and,
        for the composite, fused or decomposed; None for older artifacts."""
        entry = self.manifest["families"].get(family, {})
        out = {k: entry[k] for k in ("pipeline_options", "composite_lowering") if k in entry}
        return out or None


class FakeOurs(Ours):
    """--smoke without a GPU: stands in for the compiled functions (through
    the Triton kernel / reference) so that the harness's plumbing runs."""

    def __init__(self, folder, smoke):
        super().__init__(folder)
        p1, p3, s1, d1 = smoke["P1"], smoke["P3"], smoke["S1"], smoke["D1"]
        self.fake = {f"attention_bf16_w{c['w']}_d{c['D']}": ("att", c) for c in (p1, p3)}
        for suffix in ("", "_decomposed", "_mma_sync", "_wgmma"):  # the composite's lowerings
            self.fake.update({f"select_attention_bf16_k{c['k']}_w{c['w']}{suffix}": ("sa", c) for c in (p1, p3)})
        self.fake[f"select_k{s1['k']}_w{s1['w']}"] = ("sel", s1)
        for c in (smoke["G1"], smoke["G1-32k"]):
            for suffix in ("", "_tiles", "_tiles128"):  # the backward's lowerings
                self.fake[f"select_attention_grad_bf16_k{c['k']}_w{c['w']}{suffix}"] = ("grad", c)
        for label, suffix in DECODES:  # decode's lowerings
            suffix = suffix.format(Hq=d1["Hq"], Hkv=d1["Hkv"])
            self.fake[f"decode_bf16_k{d1['k']}_w{d1['w']}_d{d1['D']}{suffix}"] = ("dec", d1)

    def has(self, fn):
        return fn in self.fake

    def call(self, fn, *a):
        kind, c = self.fake[fn]
        if kind == "att":
            a[5].copy_(triton_sparsek.attention(*a[:5], c["w"]))
        elif kind == "sa":
            i, g, _, _ = triton_sparsek.select_torch(a[3], c["k"], c["w"], a[0].shape[2])
            a[4].copy_(triton_sparsek.attention(*a[:3], i, g, c["w"]))
        elif kind == "grad":
            n = [x.double().numpy() for x in a[:5]]
            for out, g in zip(a[5:], reference.sparsek_attention_vjp(*n[:4], c["k"], c["w"], n[4])):
                out.copy_(torch.from_numpy(g))
        elif kind == "sel":
            i, g, t, _ = triton_sparsek.select_torch(a[0], c["k"], c["w"], a[1].shape[2])
            a[1].copy_(i), a[2].copy_(g), a[3].copy_(t)
        else:
            n = [x.float().numpy() for x in a[:7]]
            o = reference.decode_attention(*n[:5], n[5].astype(np.int64), a[6].numpy(), c["k"], c["w"])
            a[7].copy_(torch.from_numpy(o))


# The composite op in its lowerings: (label, function-name suffix, family).
COMPOSITES = [("ours_select_attention", "", "select_attention"),
              ("ours_select_attention_decomposed", "_decomposed", "select_attention_decomposed"),
              ("ours_select_attention_mma_sync", "_mma_sync", "select_attention_mma_sync"),
              ("ours_select_attention_wgmma", "_wgmma", "select_attention_wgmma")]
OURS_PREFILL = ["ours_attention"] + [label for label, _, _ in COMPOSITES]


def compact(d):
    """Drops the long per-repeat lists for the console."""
    return {k: v for k, v in d.items() if k != "times_ms"}


def _probe_or_skip(call, Tp, T, scale, budget):
    """Times one warm `call` at T = Tp and predicts the full call as `scale`
    times it; returns (the probe's record, why to skip the full call or None
    when it fits the per-configuration cap and the budget)."""
    _sync()
    t0 = time.time()
    call()
    _sync()
    probe = time.time() - t0
    predicted = probe * scale
    limit = min(budget.cap_for(), budget.left() * 0.3)
    skip = None
    if predicted > limit:
        skip = (f"predicted {predicted:.1f} s per call at T = {T} from a probe at T = {Tp} "
                f"({probe * 1e3:.0f} ms); over the {limit:.0f} s cap")
    return {"T": Tp, "wall_s": probe, "predicted_s_at_T": predicted}, skip


def run_ours_prefill(ours, fn_name, args, probe_args, Tp, T, S, k, w, want, rows, budget):
    """Probe at T = Tp first (our kernels are naive: one call at full size
    may take seconds), skip when the prediction exceeds the cap, else check
    sampled rows and time."""
    r = {"function": fn_name}
    if Tp < T:
        pa = probe_args()
        po = torch.empty_like(pa[0])
        ours.call(fn_name, *pa, po)  # loads the module
        r["probe"], skip = _probe_or_skip(
            lambda: ours.call(fn_name, *pa, po), Tp, T,
            max(T / Tp, union_sizes(T, S, k, w) / union_sizes(Tp, Tp, k, w)), budget)
        del pa, po
        if skip:
            r["skipped"] = skip
            return r
    out = torch.empty_like(args[0])
    fn = lambda: ours.call(fn_name, *args, out)  # noqa: E731
    t0 = time.time()
    fn()
    _sync()
    wall_ms = (time.time() - t0) * 1e3
    err = err_rows(out, want, rows)
    r.update({"check_max_abs_err": err, "check_passed": err <= TOL})
    # the checked call is the first warm-up (its wall time the estimate)
    r.update(time_fn(fn, budget.cap_for(), est_ms=wall_ms))
    return r


# ----------------------------------------------------------------------------
# Backward: G1
# ----------------------------------------------------------------------------


def _grad_check(ours, fn_name, q, key, value, u, do, k, w, Tc):
    """All four gradients of our backward on a slice (the first Tc positions, one KV head and its
    query heads) against sparsek.reference.sparsek_attention_vjp (float64 on the bf16-rounded
    inputs): 2e-2 of each gradient's scale. Returns (max relative error, passed)."""
    G = q.shape[1] // key.shape[1]
    sl = lambda x, heads: x[:1, :heads, :Tc].contiguous()  # noqa: E731
    qs, ks, vs, us, dos = sl(q, G), sl(key, 1), sl(value, 1), sl(u, 1), sl(do, G)
    outs = [torch.empty(t.shape, dtype=torch.float32, device=DEV) for t in (qs, ks, vs, us)]
    ours.call(fn_name, qs, ks, vs, us, dos, *outs)
    _sync()
    n = lambda t: t.double().cpu().numpy()  # noqa: E731
    want = reference.sparsek_attention_vjp(n(qs), n(ks), n(vs), n(us), k, w, n(dos))
    worst = 0.0
    for got, ref in zip(outs, want):
        scale = max(float(np.abs(ref).max()), 1e-6)
        worst = max(worst, float(np.abs(n(got) - ref).max()) / scale)
    return worst, worst <= TOL


def sdpa_backward(q, key, value, do, budget):
    """Dense causal SDPA backward alone (the forward graph built once per backend, outside the
    timing), each backend that runs; returns (results, fastest)."""
    from torch.nn.attention import sdpa_kernel
    results, best = {}, None
    G = q.shape[1] // key.shape[1]
    for name, backend in sdpa_backends():
        try:
            leaves = [t.detach().requires_grad_() for t in (q, key, value)]
            with sdpa_kernel([backend]):
                out = torch.nn.functional.scaled_dot_product_attention(*leaves, is_causal=True,
                                                                       enable_gqa=G > 1)
            fn = lambda: torch.autograd.grad(out, leaves, do, retain_graph=True)  # noqa: E731
            fn()
            _sync()
            r = time_fn(fn, budget.cap_for())
            results[name] = r
            if best is None or r["median_ms"] < results[best]["median_ms"]:
                best = name
            del out, leaves
        except Exception as e:
            results[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        _empty_cache()
    if best:  # the fastest backend's gradients on a slice against float64 SDPA on the host
        try:
            Tc = min(q.shape[2], 1024)
            sl = lambda x, n: x[:1, :n, :Tc].contiguous()  # noqa: E731
            qs, ks, vs, dos = sl(q, G), sl(key, 1), sl(value, 1), sl(do, G)
            leaves = [t.detach().requires_grad_() for t in (qs, ks, vs)]
            with sdpa_kernel([dict(sdpa_backends())[best]]):
                out = torch.nn.functional.scaled_dot_product_attention(*leaves, is_causal=True,
                                                                       enable_gqa=G > 1)
            got = torch.autograd.grad(out, leaves, dos)
            ref_leaves = [t.detach().double().cpu().requires_grad_() for t in (qs, ks, vs)]
            ref_out = torch.nn.functional.scaled_dot_product_attention(*ref_leaves, is_causal=True,
                                                                       enable_gqa=G > 1)
            want = torch.autograd.grad(ref_out, ref_leaves, dos.double().cpu())
            err = max(float((a.double().cpu() - b).abs().max() / max(float(b.abs().max()), 1e-6))
                      for a, b in zip(got, want))
            results[best].update({"check_max_rel_err": err, "check_passed": err <= TOL,
                                  "check": f"dq, dk, dv of a {Tc}-query slice (1 KV head) against "
                                           "float64 SDPA on the host"})
        except Exception as e:
            results[best]["check_error"] = f"{type(e).__name__}: {e}"[:300]
    print("  sdpa backward: " + ", ".join(f"{k} {v['median_ms']:.3f} ms" for k, v in results.items()
                                          if "median_ms" in v) + f" -> best {best}", flush=True)
    return results, best


def _bench_our_backward(ours, family, fn_name, q, key, value, u, do, k, w, T, S, budget):
    """One lowering of our backward on G1: checked on a slice, then timed unless a probe
    predicts a call over the cap."""
    if not ours.has(fn_name):
        why = ours.missing.get(family)
        return {"skipped": f"{fn_name} not in the artifacts" + (f" ({why[:300]})" if why else "")}
    r = {"function": fn_name, "lowering": ours.lowering(family)}
    try:
        # Correctness first, on a slice long enough for the selection to act (T > k + w).
        Tc = min(T, k + w + 512 if DEV == "cuda" else T)
        t0 = time.time()
        err, ok = _grad_check(ours, fn_name, q, key, value, u, do, k, w, Tc)
        r["check"] = {"T": Tc, "heads": f"1 KV head, {q.shape[1] // key.shape[1]} query heads",
                      "max_rel_err": err, "check_passed": ok, "seconds": round(time.time() - t0, 1)}
        # A probe at Tc (all heads) predicts the full call; skipped when over the cap.
        outs = [torch.empty(t.shape, dtype=torch.float32, device=DEV) for t in (q, key, value, u)]
        pre = lambda x: x[:, :, :Tc].contiguous()  # noqa: E731
        pa = [pre(t) for t in (q, key, value, u, do)]
        po = [torch.empty(t.shape, dtype=torch.float32, device=DEV) for t in pa[:4]]
        r["probe"], skip = _probe_or_skip(
            lambda: ours.call(fn_name, *pa, *po), Tc, T,
            union_sizes(T, S, k, w) / union_sizes(Tc, Tc, k, w), budget)
        del pa, po
        if skip:
            r["skipped"] = skip
        else:
            fn = lambda: ours.call(fn_name, q, key, value, u, do, *outs)  # noqa: E731
            t0 = time.time()
            fn()
            _sync()
            r.update(time_fn(fn, budget.cap_for(), est_ms=(time.time() - t0) * 1e3))
        del outs
    except Exception as e:
        r["error"] = f"{type(e).__name__}: {e}"[:500]
    _empty_cache()
    return r


def bench_backward(wid, B, Hq, Hkv, T, D, k, w, ours, budget):
    """G1: the composite's backward (dq, dkey, dvalue, du from q, key, value, u, do) against the
    dense causal SDPA backward. Useful TFLOP/s = 2.5 x the forward's (BENCHMARKS.md)."""
    S = T
    rec = {"workload": wid, "shape": dict(B=B, Hq=Hq, Hkv=Hkv, T=T, S=S, D=D, k=k, w=w),
           "dtype": "bf16 inputs, f32 gradients",
           "scores": "u ~ N(0, 4) float32, no masked keys"}
    g = torch.Generator(device=DEV).manual_seed(3000 + T + D)
    q = torch.randn(B, Hq, T, D, device=DEV, dtype=DTYPE, generator=g)
    key = torch.randn(B, Hkv, S, D, device=DEV, dtype=DTYPE, generator=g)
    value = torch.randn(B, Hkv, S, D, device=DEV, dtype=DTYPE, generator=g)
    u = torch.randn(B, Hkv, S, device=DEV, dtype=torch.float32, generator=g) * 2
    do = torch.randn(B, Hq, T, D, device=DEV, dtype=DTYPE, generator=g)
    flops = 2.5 * 4.0 * B * Hq * D * union_sizes(T, S, k, w)
    dense_flops = 2.5 * 4.0 * B * Hq * D * dense_sizes(T, S)
    rec["backward_flops"], rec["dense_causal_backward_flops"] = flops, dense_flops
    impl = {}
    # Our backward's lowerings: the parallel loops and the tiles (64 and 128 rows).
    for family, suffix in (("select_attention_grad", ""), ("select_attention_grad_tiles", "_tiles"),
                           ("select_attention_grad_tiles128", "_tiles128")):
        fn_name = f"select_attention_grad_bf16_k{k}_w{w}{suffix}"
        label = f"ours_select_attention_grad{suffix}"
        impl[label] = _bench_our_backward(ours, family, fn_name, q, key, value, u, do, k, w, T, S,
                                          budget)
        print(f"  {label}: {compact(impl[label])}", flush=True)
    try:
        res, best = sdpa_backward(q, key, value, do, budget)
        impl["sdpa_dense_causal_backward"] = {"backends": res, "best": best}
        if best:
            impl["sdpa_dense_causal_backward"]["median_ms"] = res[best]["median_ms"]
    except Exception as e:
        impl["sdpa_dense_causal_backward"] = {"error": f"{type(e).__name__}: {e}"[:500]}
    for name, r in impl.items():
        if r.get("median_ms"):
            f = dense_flops if name.startswith("sdpa") else flops
            r["tflops"] = f / (r["median_ms"] * 1e-3) / 1e12
    ratios = {}
    mo, md = impl[label].get("median_ms"), impl["sdpa_dense_causal_backward"].get("median_ms")
    if mo and md:
        ratios[f"{label} / sdpa_dense_causal_backward"] = mo / md
    rec["impl"], rec["ratios_time"] = impl, ratios
    rec["ratios_note"] = "time ratios, ours / baseline: > 1 means ours is slower"
    del q, key, value, u, do
    _empty_cache()
    return rec


# ----------------------------------------------------------------------------
# Prefill: P1, P3
# ----------------------------------------------------------------------------


def bench_prefill(wid, B, Hq, Hkv, T, D, k, w, ours, budget, nrows, sweep, skip_ours=None):
    S = T
    rec = {"workload": wid, "shape": dict(B=B, Hq=Hq, Hkv=Hkv, T=T, S=S, D=D, k=k, w=w),
           "dtype": "bf16", "scores": "u ~ N(0, 4) float32 (std 2, as python/test/gpu), no masked keys"}
    g = torch.Generator(device=DEV).manual_seed(1000 + T + D)
    q = torch.randn(B, Hq, T, D, device=DEV, dtype=DTYPE, generator=g)
    key = torch.randn(B, Hkv, S, D, device=DEV, dtype=DTYPE, generator=g)
    value = torch.randn(B, Hkv, S, D, device=DEV, dtype=DTYPE, generator=g)
    u = torch.randn(B, Hkv, S, device=DEV, dtype=torch.float32, generator=g) * 2
    union = union_sizes(T, S, k, w)
    flops = 4.0 * B * Hq * D * union
    dense_flops = 4.0 * B * Hq * D * dense_sizes(T, S)
    rec["forward_flops"] = flops
    rec["dense_causal_flops"] = dense_flops

    # Selection (torch) -> explicit indices and gates, checked on sampled rows.
    t0 = time.time()
    idx, gates, tau, bad = triton_sparsek.select_torch(u, k, w, T)
    _sync()
    rows = sample_rows(T, nrows, T + D)
    un = u.double().cpu().numpy()
    sel_ok = bad == 0
    for t in rows:
        p = S - T + t
        r_idx, r_g, _ = reference.select(un[:, :, : p + 1], k, w, T=1)
        if not np.array_equal(idx[:, :, t].cpu().numpy(), r_idx[:, :, 0]):
            sel_ok = False
        if np.abs(gates[:, :, t].cpu().numpy() - r_g[:, :, 0]).max() > 1e-5:
            sel_ok = False
    rec["selection"] = {"how": "triton_sparsek.select_torch (torch.topk over masked rows, tau by bisection)",
                        "seconds_untimed": round(time.time() - t0, 3), "rows_checked": len(rows),
                        "inexact_rows": bad, "check_passed": sel_ok}
    print(f"[{wid}] T={T}: selection {'ok' if sel_ok else 'MISMATCH'} ({time.time() - t0:.1f} s)", flush=True)

    # Reference rows (float64 on the bf16-rounded inputs, float32 copies).
    qn = q[:, :, rows].float().cpu().numpy()
    kn, vn = key.float().cpu().numpy(), value.float().cpu().numpy()
    idn, gn = idx[:, :, rows].cpu().numpy(), gates[:, :, rows].cpu().numpy()
    want, want_dense = {}, {}
    for i, t in enumerate(rows):
        p = S - T + t
        want[t] = reference.attention(qn[:, :, i:i + 1], kn[:, :, : p + 1], vn[:, :, : p + 1],
                                      idn[:, :, i:i + 1], gn[:, :, i:i + 1], w)[:, :, 0]
        if i < (6 if T <= 8192 else 2) or t == rows[-1]:  # dense float64 rows cost more: fewer
            want_dense[t] = reference.dense_causal_attention(qn[:, :, i:i + 1], kn[:, :, : p + 1],
                                                             vn[:, :, : p + 1])[:, :, 0]
    del kn, vn
    rec["check"] = {"rows": rows, "against": "sparsek.reference.attention / dense_causal_attention "
                    "(float64 on the bf16-rounded inputs), tolerance 2e-2 absolute"}
    impl = {}

    # Ours: compiled attention with explicit indices, and the composite
    # select_attention (from u) when the artifacts have it, in both lowerings
    # (build_bench_artifacts.py): fused (the GPU pipeline's default) and
    # decomposed (fuse-select-attention=false: select materializes indices
    # and gates, then attention).
    Tp = min(T, 2048 if DEV == "cuda" else 64)
    pre = lambda x: x[:, :, :Tp].contiguous()  # noqa: E731  (the first Tp queries with S = Tp)
    composite_probe = lambda: (pre(q), pre(key), pre(value), pre(u))  # noqa: E731
    runs = [("ours_attention", f"attention_bf16_w{w}_d{D}", "attention",
             (q, key, value, idx, gates), lambda: (pre(q), pre(key), pre(value), pre(idx), pre(gates)))]
    runs += [(label, f"select_attention_bf16_k{k}_w{w}{suffix}", family, (q, key, value, u), composite_probe)
             for label, suffix, family in COMPOSITES]
    for label, fn_name, family, args, probe_args in runs:
        if skip_ours and skip_ours.get(label):
            impl[label] = {"skipped": skip_ours[label]}
        elif not ours.has(fn_name):
            why = ours.missing.get(family)
            impl[label] = {"skipped": f"{fn_name} not in the artifacts"
                           + (f" (the GPU pipeline rejected it: {why[:300]})" if why else "")}
        else:
            try:
                impl[label] = run_ours_prefill(ours, fn_name, args, probe_args, Tp, T, S, k, w, want, rows,
                                               budget)
            except Exception as e:
                impl[label] = {"function": fn_name, "error": f"{type(e).__name__}: {e}"[:500]}
            _empty_cache()
        lowering = ours.lowering(family)
        if lowering:
            impl[label]["lowering"] = lowering
        print(f"  {label}: {compact(impl[label])}", flush=True)

    # Triton SparseK kernel (config sweep, keep the fastest correct one).
    tri = {}
    configs = triton_sparsek.CONFIGS if sweep else [triton_sparsek.DEFAULT_CONFIG]
    best = None
    for cfg in configs:
        name = "BN{BLOCK_N}_w{num_warps}_s{num_stages}".format(**cfg)
        try:
            fn = lambda cfg=cfg: triton_sparsek.attention(q, key, value, idx, gates, w, config=cfg)  # noqa: E731
            out = fn()
            _sync()
            err = err_rows(out, want, rows)
            r = {"config": cfg, "check_max_abs_err": err, "check_passed": err <= TOL}
            r.update(time_fn(fn, budget.cap_for()))
            tri[name] = r
            del out
            if r["check_passed"] and (best is None or r["median_ms"] < tri[best]["median_ms"]):
                best = name
        except Exception as e:
            tri[name] = {"config": cfg, "error": f"{type(e).__name__}: {e}"[:500]}
    impl["triton_sparsek"] = {"configs": tri, "best": best}
    if best:
        impl["triton_sparsek"].update({k2: tri[best][k2] for k2 in ("median_ms", "check_max_abs_err",
                                                                     "check_passed")})
    for n, r in tri.items():
        if "median_ms" in r:
            print(f"  triton {n}: {r['median_ms']:.3f} ms, err {r['check_max_abs_err']:.2e}", flush=True)
        else:
            print(f"  triton {n}: {r.get('error', '')[:300]}", flush=True)

    # Triton SparseK, block variant (per query block over the block's union).
    impl["triton_sparsek_block"] = triton_block(q, key, value, idx, gates, w, S, want, rows, budget, sweep)
    if impl["triton_sparsek_block"].get("best"):
        try:
            cfg = impl["triton_sparsek_block"]["configs"][impl["triton_sparsek_block"]["best"]]["config"]
            impl["triton_sparsek_block_with_prep"] = triton_block_with_prep(q, key, value, idx, gates, w, cfg,
                                                                            budget)
        except Exception as e:
            impl["triton_sparsek_block_with_prep"] = {"error": f"{type(e).__name__}: {e}"[:500]}

    # Dense causal SDPA.
    try:
        drows = sorted(want_dense)
        res, best_b = best_sdpa(q, key, value, True, lambda o: err_rows(o, want_dense, drows), budget,
                                "sdpa dense causal")
        impl["sdpa_dense_causal"] = {"backends": res, "best": best_b}
        if best_b:
            impl["sdpa_dense_causal"]["median_ms"] = res[best_b]["median_ms"]
    except Exception as e:
        impl["sdpa_dense_causal"] = {"error": f"{type(e).__name__}: {e}"[:500]}

    # Throughput and ratios.
    for name, r in impl.items():
        ms = r.get("median_ms")
        if ms:
            f = dense_flops if name.startswith("sdpa") else flops
            r["tflops"] = f / (ms * 1e-3) / 1e12
    ratios = {}
    for ours_name in OURS_PREFILL:
        mo = impl[ours_name].get("median_ms")
        if not mo:
            continue
        for base in ("triton_sparsek", "triton_sparsek_block", "triton_sparsek_block_with_prep",
                     "sdpa_dense_causal"):
            mb = impl.get(base, {}).get("median_ms")
            if mb:
                ratios[f"{ours_name} / {base}"] = mo / mb
    mf = impl["ours_select_attention"].get("median_ms")
    mdec = impl["ours_select_attention_decomposed"].get("median_ms")
    if mf and mdec:
        ratios["ours_select_attention / ours_select_attention_decomposed"] = mf / mdec
    mmma = impl.get("ours_select_attention_mma_sync", {}).get("median_ms")
    if mf and mmma:
        ratios["ours_select_attention_mma_sync / ours_select_attention"] = mmma / mf
    mwg = impl.get("ours_select_attention_wgmma", {}).get("median_ms")
    if mf and mwg:
        ratios["ours_select_attention_wgmma / ours_select_attention"] = mwg / mf
    if mmma and mwg:
        ratios["ours_select_attention_wgmma / ours_select_attention_mma_sync"] = mwg / mmma
    md = impl["sdpa_dense_causal"].get("median_ms")
    for base in ("triton_sparsek", "triton_sparsek_block", "triton_sparsek_block_with_prep"):
        mt = impl.get(base, {}).get("median_ms")
        if mt and md:
            ratios[f"{base} / sdpa_dense_causal"] = mt / md
    rec["impl"] = impl
    rec["ratios_time"] = ratios
    rec["ratios_note"] = "time ratios, ours / baseline: > 1 means ours is slower"
    del q, key, value, u, idx, gates, tau
    _empty_cache()
    return rec


def triton_block(q, key, value, idx, gates, w, S, want, rows, budget, sweep):
    """The block variant of bench/triton_sparsek.py: config sweep on the
    kernel alone (preprocessing done once), then the best config with the
    preprocessing (block_gates) inside the timed call."""
    res = {}
    try:
        BT = triton_sparsek.block_rows(q.shape[1] // key.shape[1])
        prep = triton_sparsek.block_gates(idx, gates, w, S, BT)
        res["queries_per_block"] = BT
        res["union_misses"] = prep[2]
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:500]}
    configs = triton_sparsek.BLOCK_CONFIGS if sweep else triton_sparsek.BLOCK_CONFIGS[:1]
    tri, best = {}, None
    for cfg in configs:
        name = "BN{block_n}_w{num_warps}_s{num_stages}".format(**cfg)
        try:
            fn = lambda cfg=cfg: triton_sparsek.attention_block(q, key, value, idx, gates, w, prep=prep,  # noqa: E731
                                                                **cfg)
            out = fn()
            _sync()
            err = err_rows(out, want, rows)
            r = {"config": cfg, "check_max_abs_err": err, "check_passed": err <= TOL and prep[2] == 0}
            del out
            r.update(time_fn(fn, budget.cap_for()))
            tri[name] = r
            if r["check_passed"] and (best is None or r["median_ms"] < tri[best]["median_ms"]):
                best = name
            print(f"  triton block {name}: {r['median_ms']:.3f} ms, err {err:.2e}", flush=True)
        except Exception as e:
            tri[name] = {"config": cfg, "error": f"{type(e).__name__}: {e}"[:500]}
            print(f"  triton block {name}: {tri[name]['error'][:300]}", flush=True)
    res.update({"configs": tri, "best": best, "note": "kernel alone; preprocessing (block_gates) not timed"})
    if best:
        res.update({k2: tri[best][k2] for k2 in ("median_ms", "check_max_abs_err", "check_passed")})
    del prep
    _empty_cache()
    return res


def triton_block_with_prep(q, key, value, idx, gates, w, cfg, budget):
    fn = lambda: triton_sparsek.attention_block(q, key, value, idx, gates, w, **cfg)  # noqa: E731
    fn()
    r = time_fn(fn, budget.cap_for())
    r["note"] = "block_gates preprocessing (torch) + the kernel, best config"
    r["config"] = cfg
    return r


# ----------------------------------------------------------------------------
# Selection: S1
# ----------------------------------------------------------------------------


def select_bytes_written(B, Hkv, T, k):
    """What a materialized selection writes: indices (int32) and gates (f32)
    [B, Hkv, T, k], tau (f32) [B, Hkv, T]. About 4.3 GB at S1's T = 32768."""
    return B * Hkv * T * (k * (4 + 4) + 4)


def too_slow(predicted_s, budget):
    """S1's skip rule: three calls (the check, a warm-up, one timed) must fit
    in min(the per-configuration cap, half the budget left). The reason, or None."""
    limit = min(budget.cap_for(), budget.left() * 0.5)
    if predicted_s * 3 <= limit:
        return None
    return (f"3 calls (check, warm-up, one timed) ~ {3 * predicted_s:.1f} s exceed {limit:.1f} s = "
            f"min(the per-configuration cap {budget.cap:.0f} s (--cap), half the {budget.left():.0f} s of "
            f"budget left (--budget))")


def bench_select(wid, B, Hkv, T, k, w, ours, budget, nrows, copy_gbs=None, prior=None):
    """prior: None for S1's first T; for a larger T, what S1 measured earlier in
    this run ({"T", "torch_select_ms", "ours_select_ms"}, possibly empty), to
    predict the torch baseline at this T (from a probe at T / 4 when empty)."""
    S = T
    rec = {"workload": wid, "shape": dict(B=B, Hkv=Hkv, T=T, S=S, k=k, w=w),
           "scores": "u ~ N(0, 4) float32, no masked keys",
           "outputs": "indices [B, Hkv, T, k] int32 sorted ascending (-1 padded), gates f32, tau f32"}
    written = select_bytes_written(B, Hkv, T, k)
    rec["bytes_written"] = written
    rec["bytes_written_note"] = ("indices int32 + gates f32 [B, Hkv, T, k] + tau f32 [B, Hkv, T]: what a "
                                 "materialized selection (ours_select, torch_select) must write; GBps = "
                                 "these bytes / median time, a memory-bandwidth floor to set against the copy rate")
    if copy_gbs:
        rec["write_floor_ms_at_copy_rate"] = written / (copy_gbs * 1e9) * 1e3
    print(f"[{wid}] T={T}: a materialized selection writes {written / 1e9:.3g} GB"
          + (f" (>= {rec['write_floor_ms_at_copy_rate']:.3g} ms at the {copy_gbs:.0f} GB/s copy rate)"
             if copy_gbs else ""), flush=True)
    g = torch.Generator(device=DEV).manual_seed(77)
    u = torch.randn(B, Hkv, S, device=DEV, dtype=torch.float32, generator=g) * 2
    un = u.double().cpu().numpy()
    rows = sample_rows(T, nrows, 5)
    ref = {}
    for t in rows:
        r_idx, r_g, r_tau = reference.select(un[:, :, : S - T + t + 1], k, w, T=1)
        ref[t] = (r_idx[:, :, 0], r_g[:, :, 0], r_tau[:, :, 0])

    gate_tol = 1e-4 * max(1.0, float(u.abs().max()))  # SPEC 8, GPU f32: 1e-4 (x max |u| of the row)

    def check(idx, gates, tau):
        worst_g, same = 0.0, True
        for t in rows:
            same &= bool(np.array_equal(idx[:, :, t].cpu().numpy(), ref[t][0]))
            worst_g = max(worst_g, float(np.abs(gates[:, :, t].cpu().numpy() - ref[t][1]).max()))
        return {"indices_identical": same, "gates_max_abs_err": worst_g,
                "gate_tolerance": gate_tol, "check_passed": same and worst_g <= gate_tol,
                "rows_checked": len(rows)}

    impl = {}
    # Baseline: torch.topk over masked score rows (the full output: indices, gates, tau).
    # Every row masks and top-k's all S keys: time ~ T * S. Past the T of an
    # earlier S1 in this run, predicted from it (else from a probe at T / 4)
    # and skipped by the same rule as ours.
    r = {"how": ("per chunk of query rows: u masked to each row's candidates, torch.topk of 4k "
                 "(sorted), SPARSEK tau by float64 bisection + exact solve, gates, indices sorted")}
    try:
        why = None
        if prior and prior.get("torch_select_ms") and T > prior["T"]:
            pred = prior["torch_select_ms"] * 1e-3 * (T / prior["T"]) ** 2
            r["prediction"] = {"from": f"torch_select at T = {prior['T']} in this run "
                               f"({prior['torch_select_ms']:.0f} ms) x (T ratio)^2", "predicted_s": pred}
            why = too_slow(pred, budget)
        elif prior is not None:  # a larger-T S1 without an earlier torch_select time
            Tq = T // 4
            uq = u[:, :, :Tq].contiguous()
            triton_sparsek.select_torch(uq, k, w, Tq)
            _sync()
            t0 = time.time()
            triton_sparsek.select_torch(uq, k, w, Tq)
            _sync()
            probe = time.time() - t0
            del uq
            pred = probe * 16
            r["prediction"] = {"from": f"a probe at T = {Tq} ({probe:.3f} s) x 16", "predicted_s": pred}
            why = too_slow(pred, budget)
        if why:
            r["skipped"] = f"predicted {pred:.1f} s per call at T = {T}: " + why
        else:
            fn = lambda: triton_sparsek.select_torch(u, k, w, T)  # noqa: E731
            t0 = time.time()
            idx, gates, tau, bad = fn()
            _sync()
            wall_ms = (time.time() - t0) * 1e3
            r.update(check(idx, gates, tau))
            r["inexact_rows"] = bad
            del idx, gates, tau
            _empty_cache()
            r.update(time_fn(fn, budget.cap_for(), warmup=3, repeats=10, est_ms=wall_ms))
        impl["torch_select"] = r
    except Exception as e:
        impl["torch_select"] = {"error": f"{type(e).__name__}: {e}"[:500]}
    _empty_cache()
    print(f"[{wid}] T={T} torch_select: {compact(impl['torch_select'])}", flush=True)
    try:
        fn = lambda: triton_sparsek.topk_only(u, k, w, T)  # noqa: E731
        t0 = time.time()
        fn()
        _sync()
        r = time_fn(fn, budget.cap_for(), warmup=3, repeats=10, est_ms=(time.time() - t0) * 1e3)
        r["how"] = "torch.topk(k, sorted=False) over masked rows only: no tau, no gates, no sort (lower bound)"
        impl["torch_topk_only"] = r
    except Exception as e:
        impl["torch_topk_only"] = {"error": f"{type(e).__name__}: {e}"[:500]}
    _empty_cache()
    print(f"  torch_topk_only: {compact(impl['torch_topk_only'])}", flush=True)

    name = f"select_k{k}_w{w}"
    if not ours.has(name):
        impl["ours_select"] = {"skipped": "not available: the artifacts have no GPU selection ("
                               + ours.missing.get("select", "?")[:400] + ")"}
    else:
        idx = torch.empty(B, Hkv, T, k, dtype=torch.int32, device=DEV)
        gates = torch.empty(B, Hkv, T, k, dtype=torch.float32, device=DEV)
        tau = torch.empty(B, Hkv, T, dtype=torch.float32, device=DEV)
        try:
            # Probe at a short T first (T = 4096: past k + w, so the pool and
            # tau work is representative), then predict linearly in T with a
            # 1.5 margin. The GPU selection is parallel over query chunks (it
            # was one thread per (b, h) row, sequential in T, until 5e7b28a): a
            # short probe fills the GPU less, so the prediction errs high.
            Tp = min(T, 4096 if DEV == "cuda" else 64)
            up = u[:, :, :Tp].contiguous()
            ip, gp, tp = idx[:, :, :Tp].contiguous(), gates[:, :, :Tp].contiguous(), tau[:, :, :Tp].contiguous()
            ours.call(name, up, ip, gp, tp)
            _sync()
            t0 = time.time()
            ours.call(name, up, ip, gp, tp)
            _sync()
            probe = time.time() - t0
            del up, ip, gp, tp
            predicted = 1.5 * probe * T / Tp
            r = {"function": name, "probe": {"T": Tp, "wall_s": probe}, "predicted_s": predicted}
            if prior and prior.get("ours_select_ms") and T > prior["T"]:
                r["predicted_s_from_prior"] = prior["ours_select_ms"] * 1e-3 * T / prior["T"]
            why = too_slow(predicted, budget)
            if why:
                r["skipped"] = (f"predicted {predicted:.1f} s per call at T = {T} from a probe at T = {Tp} "
                                f"({probe:.3f} s) x 1.5 T / {Tp}: " + why)
            else:
                fn = lambda: ours.call(name, u, idx, gates, tau)  # noqa: E731
                t0 = time.time()
                fn()
                _sync()
                wall_ms = (time.time() - t0) * 1e3
                r.update(check(idx, gates, tau))
                r.update(time_fn(fn, budget.cap_for(), warmup=3, repeats=10, est_ms=wall_ms))
            impl["ours_select"] = r
        except Exception as e:
            impl["ours_select"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        del idx, gates, tau
    print(f"  ours_select: {compact(impl['ours_select'])}", flush=True)
    for n in ("ours_select", "torch_select"):
        r = impl[n]
        if r.get("median_ms"):
            r["bytes_written"] = written
            r["GBps"] = written / (r["median_ms"] * 1e-3) / 1e9
            if copy_gbs:
                r["fraction_of_copy_rate"] = r["GBps"] / copy_gbs
            print(f"  {n}: {r['GBps']:.4g} GB/s written"
                  + (f" ({r['fraction_of_copy_rate']:.2%} of the copy rate)" if copy_gbs else ""), flush=True)
    ratios = {}
    mo = impl["ours_select"].get("median_ms")
    for base in ("torch_select", "torch_topk_only"):
        mb = impl[base].get("median_ms")
        if mo and mb:
            ratios[f"ours_select / {base}"] = mo / mb
    rec["impl"] = impl
    rec["ratios_time"] = ratios
    rec["select_vs_p1_attention"] = {"pending": "filled in by the parent process from P1 at the same T"}
    del u
    _empty_cache()
    return rec


def link_select_to_p1(record):
    """S1's selection time next to P1's attention times at the same T, both
    measured in this run: S1 records get `select_vs_p1_attention` (and the
    ours_select ratios in ratios_time)."""
    p1 = {rec["shape"]["T"]: rec for rec in record["results"]
          if rec.get("workload") == "P1" and "impl" in rec}
    for rec in record["results"]:
        if rec.get("workload") != "S1" or "impl" not in rec:
            continue
        sh = rec["shape"]
        T = sh["T"]
        out = {"T": T, "note": ("selection time / attention time at the same T (B, Hkv, k, w as P1; S1's scores "
                                "are other random draws of the same distribution). ours_select_attention "
                                "(fused) includes its selection; ours_attention and the Triton/SDPA "
                                "baselines do not")}
        sel = {n: rec["impl"].get(n, {}).get("median_ms") for n in ("ours_select", "torch_select")}
        out["select_ms"] = {n: v for n, v in sel.items() if v}
        if not sel["ours_select"]:
            r = rec["impl"].get("ours_select", {})
            out["ours_select_not_timed"] = r.get("skipped") or r.get("error") or "not timed"
        pr = p1.get(T)
        for key in [x for x in rec.get("ratios_time", {}) if " / P1 " in x]:
            del rec["ratios_time"][key]
        if pr is None:
            out["unavailable"] = (f"no P1 record at T = {T} in this run (P1 measured at T = "
                                  f"{sorted(p1) or 'none'})")
        elif any(pr["shape"].get(x) != sh.get(x) for x in ("B", "Hkv", "k", "w")):
            out["unavailable"] = f"P1 at T = {T} has another shape ({pr['shape']})"
        else:
            att, missing = {}, {}
            for n in OURS_PREFILL + ["triton_sparsek", "triton_sparsek_block", "sdpa_dense_causal"]:
                r = pr["impl"].get(n, {})
                if r.get("median_ms"):
                    att[n] = r["median_ms"]
                else:
                    missing[n] = r.get("skipped") or r.get("error") or "not timed"
            out["p1_attention_ms"] = att
            if missing:
                out["p1_not_timed"] = missing
            out["ratios"] = {f"{s} / P1 {a}": sm / am for s, sm in out["select_ms"].items()
                             for a, am in att.items()}
            for key, v in out["ratios"].items():
                if key.startswith("ours_select / ") and key.split(" / P1 ")[1] in (
                        "ours_attention", "ours_select_attention", "ours_select_attention_mma_sync",
                        "ours_select_attention_wgmma",
                        "triton_sparsek_block", "sdpa_dense_causal"):
                    rec.setdefault("ratios_time", {})[key] = v
        rec["select_vs_p1_attention"] = out


# ----------------------------------------------------------------------------
# Decode: D1
# ----------------------------------------------------------------------------


# Our decode in its lowerings: (label, function-name suffix): the loop
# kernels, the tile-first kernel with run-time head counts (same signature)
# and with the workload's head counts compiled in, on CUDA cores
# (decode-kernel=tiles) and on tensor cores (decode-kernel=tiles-mma).
DECODES = [("ours_decode", ""), ("ours_decode_tiles", "_tiles"),
           ("ours_decode_tiles_static_heads", "_tiles_h{Hq}x{Hkv}"),
           ("ours_decode_tiles_mma", "_tiles_mma"),
           ("ours_decode_tiles_mma_static_heads", "_tiles_mma_h{Hq}x{Hkv}")]


def decode_inputs(B, Hq, Hkv, D, k, w, context):
    """D1's inputs (q, key, value, scores, tau, pool counts, positions): every
    sequence at position context - 1 with a full pool and window ring."""
    L = k + w
    g = torch.Generator(device=DEV).manual_seed(B)
    q = torch.randn(B, Hq, D, device=DEV, dtype=DTYPE, generator=g)
    kc = torch.randn(B, Hkv, L, D, device=DEV, dtype=DTYPE, generator=g)
    vc = torch.randn(B, Hkv, L, D, device=DEV, dtype=DTYPE, generator=g)
    tau = torch.randn(B, Hkv, device=DEV, dtype=torch.float32, generator=g)
    sc = tau[..., None] + torch.randn(B, Hkv, L, device=DEV, generator=g).abs()
    sc[..., k:] = torch.randn(B, Hkv, w, device=DEV, generator=g)  # window slots: scores unused
    cnt = torch.full((B, Hkv), k, dtype=torch.int32, device=DEV)
    pos = torch.full((B,), context - 1, dtype=torch.int64, device=DEV)
    return q, kc, vc, sc, tau, cnt, pos


def decode_bytes(B, Hq, Hkv, D, k, w):
    """Bytes our decode reads and writes: K, V, scores, tau, count,
    positions, q and the output."""
    L = k + w
    return 2 * B * Hkv * L * D * 2 + B * Hkv * L * 4 + B * Hkv * 8 + B * 8 + 2 * B * Hq * D * 2


def bench_decode(wid, B, Hq, Hkv, D, k, w, context, ours, budget, copy_gbs):
    L = k + w
    rec = {"workload": wid, "shape": dict(B=B, Hq=Hq, Hkv=Hkv, D=D, k=k, w=w, context=context),
           "dtype": "bf16",
           "cache_state": (f"every sequence at position {context - 1} (context {context}), pool full "
                           f"(pool_count = k), window ring full; pool scores tau + |N(0,1)| (gates in "
                           f"(0, 1]), K/V N(0, 1)")}
    q, kc, vc, sc, tau, cnt, pos = decode_inputs(B, Hq, Hkv, D, k, w, context)

    # Reference on sampled sequences.
    bs = sorted(set([0, B - 1, B // 2]))
    want = reference.decode_attention(q[bs].float().cpu().numpy(), kc[bs].float().cpu().numpy(),
                                      vc[bs].float().cpu().numpy(), sc[bs].cpu().numpy(),
                                      tau[bs].cpu().numpy(), cnt[bs].cpu().numpy().astype(np.int64),
                                      pos[bs].cpu().numpy(), k, w)

    def err(out):
        return float(np.abs(out.reshape(B, Hq, D)[bs].float().cpu().numpy() - want).max())

    kv_bytes = 2 * B * Hkv * L * D * 2
    bytes_ours = decode_bytes(B, Hq, Hkv, D, k, w)
    impl = {}
    # Our decode in its lowerings: the loops (one thread per (sequence, query
    # head, split) then a merge launch) and tile first (decode-kernel=tiles).
    for label, suffix in DECODES:
        name = f"decode_bf16_k{k}_w{w}_d{D}{suffix.format(Hq=Hq, Hkv=Hkv)}"
        if not ours.has(name):
            impl[label] = {"skipped": f"{name} not in the artifacts"}
            continue
        out = torch.empty(B, Hq, D, dtype=DTYPE, device=DEV)
        fn = lambda: ours.call(name, q, kc, vc, sc, tau, cnt, pos, out)  # noqa: E731
        try:
            fn()
            _sync()
            e = err(out)
            r = {"function": name, "check_max_abs_err": e, "check_passed": e <= TOL, "bytes": bytes_ours}
            r.update(time_fn(fn, budget.cap_for()))
            impl[label] = r
        except Exception as ex:
            impl[label] = {"error": f"{type(ex).__name__}: {ex}"[:500]}
        del out

    # Baseline: SDPA over the compact cache, gates multiplied into V first.
    is_pool = torch.arange(L, device=DEV) < k
    q4 = q[:, :, None]

    def gated_v():
        gate = torch.where(is_pool, (sc - tau[..., None]).clamp(0.0, 1.0), 1.0)
        return vc * gate[..., None].to(vc.dtype)

    vg = gated_v()
    try:
        res, best = best_sdpa(q4, kc, vg, False, err, budget, f"D1 B={B} sdpa compact (pre-gated V)")
        impl["sdpa_compact_pregated"] = {"backends": res, "best": best,
                                         "bytes": kv_bytes + 2 * B * Hq * D * 2,
                                         "note": "V already multiplied by the gates (not timed)"}
        if best:
            impl["sdpa_compact_pregated"]["median_ms"] = res[best]["median_ms"]
            bk = dict(sdpa_backends())[best.split("+")[0]]

            def full():
                v2 = gated_v()
                return sdpa_call(bk, q4, kc, v2, False, "+expanded_kv" in best)()
            o = full()
            _sync()
            e = err(o)
            r = {"check_max_abs_err": e, "check_passed": e <= TOL, "backend": best,
                 "bytes": kv_bytes + 2 * B * Hkv * L * D * 2 + B * Hkv * L * 4 + 2 * B * Hq * D * 2,
                 "note": "gates computed from (scores, tau) and multiplied into V every step, then SDPA"}
            r.update(time_fn(full, budget.cap_for()))
            impl["sdpa_compact_gating_included"] = r
    except Exception as ex:
        impl["sdpa_compact_pregated"] = {"error": f"{type(ex).__name__}: {ex}"[:500]}
    del vg
    _empty_cache()

    # Baseline: dense decode over the full context.
    need = 2 * B * Hkv * context * D * 2
    free = torch.cuda.mem_get_info()[0] if DEV == "cuda" else 2**34
    if need * 1.2 > free:
        impl["sdpa_dense_full_context"] = {"skipped": f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} free"}
    else:
        try:
            g = torch.Generator(device=DEV).manual_seed(B + 1)
            kd = torch.randn(B, Hkv, context, D, device=DEV, dtype=DTYPE, generator=g)
            vd = torch.randn(B, Hkv, context, D, device=DEV, dtype=DTYPE, generator=g)
            # check: the first sequence against float32 torch math
            G = Hq // Hkv
            s = torch.einsum("hgd,hsd->hgs", q[0].float().view(Hkv, G, D), kd[0].float()) / math.sqrt(D)
            ref0 = torch.einsum("hgs,hsd->hgd", s.softmax(-1), vd[0].float()).reshape(Hq, D).cpu().numpy()
            del s

            def err_dense(o):
                return float(np.abs(o[0, :, 0].float().cpu().numpy() - ref0).max())
            res, best = best_sdpa(q4, kd, vd, False, err_dense, budget, f"D1 B={B} sdpa dense 32k")
            impl["sdpa_dense_full_context"] = {"backends": res, "best": best,
                                               "bytes": need + 2 * B * Hq * D * 2}
            if best:
                impl["sdpa_dense_full_context"]["median_ms"] = res[best]["median_ms"]
            del kd, vd
        except Exception as ex:
            impl["sdpa_dense_full_context"] = {"error": f"{type(ex).__name__}: {ex}"[:500]}
    _empty_cache()

    for r in impl.values():
        if r.get("median_ms") and r.get("bytes"):
            r["GBps"] = r["bytes"] / (r["median_ms"] * 1e-3) / 1e9
            if copy_gbs:
                r["fraction_of_copy_rate"] = r["GBps"] / copy_gbs
    ratios = {}
    for label, _ in DECODES:
        mo = impl.get(label, {}).get("median_ms")
        for base in ("sdpa_compact_pregated", "sdpa_compact_gating_included", "sdpa_dense_full_context"):
            mb = impl.get(base, {}).get("median_ms")
            if mo and mb:
                ratios[f"{label} / {base}"] = mo / mb
    rec["impl"] = impl
    rec["ratios_time"] = ratios
    print(f"[{wid}] B={B}: " + ", ".join(f"{n} {r['median_ms']:.4f} ms" for n, r in impl.items()
                                         if r.get("median_ms")) + f"; ratios {ratios}", flush=True)
    del q, kc, vc, sc, tau, cnt, pos
    _empty_cache()
    return rec


def bench_step(wid, Bs, Hq, Hkv, D, k, w, context, ours, budget):
    """E1: one decode step of one layer, end to end, for each batch size in Bs:
    append the new token of every sequence to the runtime's CUDA KV cache
    (window, pool, exact tau), then decode attention over the cache's slots
    (the D1 function); eager, and replayed from a CUDA graph captured once.
    Also times the prompt fill (sk_cache_append_chunk of context - 1 tokens,
    one sequence) that prepares the cache: issue 12 sets it against prefill."""
    from sparsek.kv_cache import KVCache
    # The GPU pipeline's default decode kernel (decode-kernel=tiles).
    name = f"decode_bf16_k{k}_w{w}_d{D}_tiles"
    rec = {"workload": wid, "shape": dict(B=max(Bs), Hq=Hq, Hkv=Hkv, D=D, k=k, w=w, context=context),
           "dtype": "bf16"}
    if DEV != "cuda":
        rec["skipped"] = "needs a GPU (the runtime's CUDA KV cache)"
        return [rec]
    if not ours.has(name):
        rec["skipped"] = f"{name} not in the artifacts"
        return [rec]
    B_max = max(Bs)
    g = torch.Generator(device=DEV).manual_seed(7)
    cache = KVCache(1, Hkv, k, w, D, dtype="bf16", max_seqs=B_max, backend="cuda",
                    device=torch.cuda.current_device())
    seqs = [cache.alloc_seq() for _ in range(B_max)]
    fill = {"tokens": context - 1, "per_sequence_ms": [], "warmup": 1}
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    # One untimed fill of the same size first, into a cache of its own (the
    # timed sequences start empty), as every other timed call has warm-ups:
    # the first fill of a process pays for loading kernels and scratch.
    warm = KVCache(1, Hkv, k, w, D, dtype="bf16", max_seqs=1, backend="cuda",
                   device=torch.cuda.current_device())
    kk = torch.randn(Hkv, context - 1, D, device=DEV, dtype=DTYPE, generator=g)
    uu = torch.randn(Hkv, context - 1, device=DEV, generator=g)
    warm.append_chunk(0, warm.alloc_seq(), kk, kk, uu)
    torch.cuda.synchronize()
    warm.check_device_error()
    warm.close()
    filled = 0
    for s in seqs:
        if fill["per_sequence_ms"] and budget.left() < 60 + 2 * sum(fill["per_sequence_ms"]) * 1e-3:
            break
        kk = torch.randn(Hkv, context - 1, D, device=DEV, dtype=DTYPE, generator=g)
        vv = torch.randn(Hkv, context - 1, D, device=DEV, dtype=DTYPE, generator=g)
        uu = torch.randn(Hkv, context - 1, device=DEV, generator=g)
        # Device time, as every other timed call here (L2 flushed, the GPU
        # asleep while the host queues the call): P1's prefill, which the
        # fill is set against, is timed so.
        _prelude()
        start.record()
        cache.append_chunk(0, s, kk, vv, uu)
        end.record()
        end.synchronize()
        fill["per_sequence_ms"].append(start.elapsed_time(end))
        filled += 1
    cache.check_device_error()
    fill["median_ms"] = float(np.median(fill["per_sequence_ms"]))
    fill["note"] = ("one sequence's prompt of context - 1 tokens into the CUDA cache "
                    "(sk_cache_append_chunk), device time as the other workloads; compare with "
                    "P1's prefill attention at the same T")
    view = cache.torch_view(0)
    out_recs = []
    for B in [b for b in Bs if b <= filled]:
        r = {"workload": wid, "shape": dict(B=B, Hq=Hq, Hkv=Hkv, D=D, k=k, w=w, context=context),
             "dtype": "bf16", "prompt_fill": fill}
        ids = seqs[:B]
        q = torch.randn(B, Hq, D, device=DEV, dtype=DTYPE, generator=g)
        key = torch.randn(B, Hkv, D, device=DEV, dtype=DTYPE, generator=g)
        value = torch.randn(B, Hkv, D, device=DEV, dtype=DTYPE, generator=g)
        u = torch.randn(B, Hkv, device=DEV, generator=g)
        out = torch.empty(B, Hq, D, dtype=DTYPE, device=DEV)
        sl = [a[:B] for a in (view.k_slots, view.v_slots, view.slot_scores, view.tau,
                              view.pool_count, view.pos)]

        def step():
            cache.append(0, ids, key, value, u)
            ours.call(name, q, *sl, out)
        impl = {}
        try:
            step()
            _sync()
            cache.check_device_error()
            # The step's output against the reference over the cache state it read.
            bs = sorted(set([0, B - 1]))
            want = reference.decode_attention(
                q[bs].float().cpu().numpy(), sl[0][bs].float().cpu().numpy(),
                sl[1][bs].float().cpu().numpy(), sl[2][bs].cpu().numpy(), sl[3][bs].cpu().numpy(),
                sl[4][bs].cpu().numpy().astype(np.int64), sl[5][bs].cpu().numpy(), k, w)
            e = float(np.abs(out[bs].float().cpu().numpy() - want).max())
            eager = {"check_max_abs_err": e, "check_passed": e <= TOL,
                     "note": "device time per step (host launch work hidden behind a GPU sleep)"}
            eager.update(time_fn(step, budget.cap_for()))
            n = 50
            _sync()
            start.record()
            for _ in range(n):
                step()
            end.record()
            end.synchronize()
            eager["back_to_back_us_per_step"] = start.elapsed_time(end) * 1e3 / n
            impl["ours_step_eager"] = eager
            graph = torch.cuda.CUDAGraph()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                step()                        # warm-up on the capture stream's side, as torch advises
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(graph):
                step()
            replay = {"note": "graph.replay() of one captured step"}
            replay.update(time_fn(graph.replay, budget.cap_for()))
            _sync()
            start.record()
            for _ in range(n):
                graph.replay()
            end.record()
            end.synchronize()
            replay["back_to_back_us_per_step"] = start.elapsed_time(end) * 1e3 / n
            cache.check_device_error()
            impl["ours_step_graph"] = replay
            del graph
        except Exception as ex:
            impl.setdefault("ours_step_eager", {})["error"] = f"{type(ex).__name__}: {ex}"[:500]

        # Baseline: a dense cache append (index copy into the k + w compact cache) and SDPA with
        # the gates computed and multiplied into V, every step.
        L = k + w
        kc = torch.randn(B, Hkv, L, D, device=DEV, dtype=DTYPE, generator=g)
        vc = torch.randn(B, Hkv, L, D, device=DEV, dtype=DTYPE, generator=g)
        sc = torch.randn(B, Hkv, L, device=DEV, generator=g)
        tau = torch.randn(B, Hkv, 1, device=DEV, generator=g)
        is_pool = torch.arange(L, device=DEV) < k
        slot = torch.tensor([k], device=DEV)
        q4 = q[:, :, None]
        try:
            def base():
                kc.index_copy_(2, slot, key[:, :, None])
                vc.index_copy_(2, slot, value[:, :, None])
                gate = torch.where(is_pool, (sc - tau).clamp(0.0, 1.0), 1.0)
                v2 = vc * gate[..., None].to(vc.dtype)
                return torch.nn.functional.scaled_dot_product_attention(q4, kc, v2, enable_gqa=True)
            base()
            b = {"note": "index_copy_ of the new K/V into a compact k + w cache, gates into V, SDPA "
                         "(backend chosen by torch)"}
            b.update(time_fn(base, budget.cap_for()))
            impl["torch_step_compact_gated"] = b
        except Exception as ex:
            impl["torch_step_compact_gated"] = {"error": f"{type(ex).__name__}: {ex}"[:500]}
        del kc, vc, sc
        ratios = {}
        mb = impl.get("torch_step_compact_gated", {}).get("median_ms")
        for n_ in ("ours_step_eager", "ours_step_graph"):
            mo = impl.get(n_, {}).get("median_ms")
            if mo and mb:
                ratios[f"{n_} / torch_step_compact_gated"] = mo / mb
        r["impl"] = impl
        r["ratios_time"] = ratios
        print(f"[{wid}] B={B}: " + ", ".join(f"{n_} {x['median_ms']:.4f} ms" for n_, x in impl.items()
                                              if x.get("median_ms")) + f"; ratios {ratios}", flush=True)
        out_recs.append(r)
    if filled < B_max:
        out_recs.append({"workload": wid, "skipped": f"filled {filled} of {B_max} sequences within the budget; "
                         f"batch sizes above {filled} not run"})
    cache.close()
    _empty_cache()
    return out_recs


def copy_rate():
    x = torch.empty((2 * 2**30) if DEV == "cuda" else 2**26, dtype=torch.uint8, device=DEV)
    y = torch.empty_like(x)
    r = time_fn(lambda: y.copy_(x), 10.0)
    n = x.numel()
    gbs = 2 * n / (r["median_ms"] * 1e-3) / 1e9
    del x, y
    _empty_cache()
    return {"bytes_read_plus_written": 2 * n, "median_ms": r["median_ms"], "GBps": gbs}


# ----------------------------------------------------------------------------


def environment(artifacts):
    env = {"gpu": torch.cuda.get_device_name(0) if DEV == "cuda" else "none (--smoke on the CPU)",
           "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "python": platform.python_version(), "host": platform.node()}
    try:
        import triton
        env["triton"] = triton.__version__
    except ImportError:
        pass
    try:
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,memory.total",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
        env["driver"] = env["nvidia_smi"].split(",")[1].strip()
    except Exception as e:
        env["nvidia_smi"] = f"unavailable: {e}"
    with open(os.path.join(artifacts, "manifest.json")) as f:
        m = json.load(f)
    env["python_package"] = os.path.relpath(PY_PACKAGE, ROOT)
    env["artifacts_commit"] = m.get("commit")
    env["artifacts_worktree_dirty"] = m.get("worktree_dirty")
    return env


# BENCHMARKS.md workloads (bf16); --smoke: tiny shapes through the same code.
WORKLOADS = {
    "P1": dict(B=1, Hq=32, Hkv=8, T=8192, D=128, k=2048, w=512),
    "P1-32k": dict(B=1, Hq=32, Hkv=8, T=32768, D=128, k=2048, w=512),
    "P1-128k": dict(B=1, Hq=32, Hkv=8, T=131072, D=128, k=2048, w=512),
    "P3": dict(B=8, Hq=12, Hkv=12, T=4096, D=64, k=256, w=256),
    "S1": dict(B=1, Hkv=8, T=32768, k=2048, w=512),
    "S1-128k": dict(B=1, Hkv=8, T=131072, k=2048, w=512),
    "D1": dict(Hq=32, Hkv=8, D=128, k=2048, w=512, context=32768),
    "E1": dict(Hq=32, Hkv=8, D=128, k=2048, w=512, context=32768),
    "G1": dict(B=1, Hq=32, Hkv=8, T=8192, D=128, k=2048, w=512),
    "G1-32k": dict(B=1, Hq=32, Hkv=8, T=32768, D=128, k=2048, w=512),
}
SMOKE = {
    "P1": dict(B=1, Hq=8, Hkv=2, T=160, D=64, k=16, w=16),
    "P1-32k": dict(B=1, Hq=8, Hkv=2, T=300, D=64, k=16, w=16),
    "P1-128k": dict(B=1, Hq=8, Hkv=2, T=600, D=64, k=16, w=16),
    "P3": dict(B=2, Hq=2, Hkv=2, T=100, D=64, k=8, w=8),
    "S1": dict(B=1, Hkv=2, T=300, k=16, w=16),
    "S1-128k": dict(B=1, Hkv=2, T=600, k=16, w=16),
    "D1": dict(Hq=8, Hkv=2, D=64, k=16, w=8, context=256),
    "E1": dict(Hq=8, Hkv=2, D=64, k=16, w=8, context=256),
    "G1": dict(B=1, Hq=4, Hkv=2, T=120, D=64, k=16, w=16),
    "G1-32k": dict(B=1, Hq=4, Hkv=2, T=200, D=64, k=16, w=16),
}


def summarize(record):
    """One line per (workload, implementation): the figures of the report."""
    rows = []
    for rec in record["results"]:
        if "impl" not in rec:
            rows.append({"workload": rec.get("workload"), "error": rec.get("error")})
            continue
        sh = rec["shape"]
        size = f"B={sh['B']}" if rec["workload"] in ("D1", "E1") else f"T={sh['T']}"
        for name, r in rec["impl"].items():
            row = {"workload": rec["workload"], "size": size, "impl": name}
            for key in ("median_ms", "tflops", "GBps", "fraction_of_copy_rate", "check_passed", "repeats",
                        "skipped", "error", "best", "reduced"):
                if r.get(key) is not None:
                    row[key] = r[key]
            if "median_ms" in r and "check_passed" not in r and r.get("best") and "backends" in r:
                row["check_passed"] = r["backends"][r["best"]].get("check_passed")
            rows.append(row)
        for ratio, v in rec.get("ratios_time", {}).items():
            rows.append({"workload": rec["workload"], "size": size, "ratio": ratio, "value": v})
    return rows


def run_workload(wl, a, wls, ours, budget, copy_gbs, p1_ours_ms, s1_prior, record, save):
    """One workload (in a child process): appends to record["results"] /
    record["skipped"], calling save() after each step."""
    if wl == "D1":
        for B in [int(x) for x in a.decode_batches.split(",")]:
            if budget.left() < 15:
                record["skipped"].append({"workload": f"D1 B={B}", "why": "total budget spent"})
                continue
            c = wls["D1"]
            record["results"].append(bench_decode("D1", B, c["Hq"], c["Hkv"], c["D"], c["k"], c["w"],
                                                  c["context"], ours, budget, copy_gbs))
            save()
    elif wl == "E1":
        c = wls["E1"]
        record["results"] += bench_step("E1", [int(x) for x in a.decode_batches.split(",")], c["Hq"],
                                        c["Hkv"], c["D"], c["k"], c["w"], c["context"], ours, budget)
    elif wl == "P3":
        record["results"].append(bench_prefill("P3", *wls["P3"].values(), ours, budget, a.rows, sweep=True))
    elif wl == "P1":
        record["results"].append(bench_prefill("P1", *wls["P1"].values(), ours, budget, a.rows, sweep=True))
    elif wl in ("G1", "G1-32k"):
        record["results"].append(bench_backward("G1", *wls[wl].values(), ours, budget))
    elif wl == "S1":
        record["results"].append(bench_select("S1", *wls["S1"].values(), ours, budget, a.rows, copy_gbs))
    elif wl == "S1-128k":
        # After P1-32k in the default order: a slow selection here cannot take
        # P1's budget. Our selection and the torch baseline each skipped (with
        # the reason) when predicted over the cap / budget.
        record["results"].append(bench_select("S1", *wls["S1-128k"].values(), ours, budget, a.rows, copy_gbs,
                                              prior=s1_prior))
    elif wl == "P1-32k":
        # Selection (~seconds), references and ~4x the work of T = 8192.
        skip = {}
        for n, ms in p1_ours_ms.items():
            if ms and ms * 1e-3 * 4.5 * 3 > budget.left() * 0.4:
                skip[n] = (f"{n} took {ms:.0f} ms at T = 8192; ~4.5x that at 32768 times 3 calls "
                           f"exceeds 40% of the {budget.left():.0f} s of budget left")
        if budget.left() < 60:
            record["skipped"].append({"workload": "P1 T=32768",
                                      "why": f"{budget.left():.0f} s of the budget left (< 60 s)"})
            return
        record["results"].append(bench_prefill("P1", *wls["P1-32k"].values(), ours, budget,
                                               max(4, a.rows // 2), sweep=False, skip_ours=skip))
    elif wl == "P1-128k":
        # Not in the default list: dense SDPA alone takes ~0.2 s a call here.
        record["results"].append(bench_prefill("P1", *wls["P1-128k"].values(), ours, budget,
                                               max(4, a.rows // 2), sweep=False))
    else:
        record["skipped"].append({"workload": wl, "why": "unknown workload name"})
    save()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", default=os.path.join(ROOT, "build", "bench-artifacts"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    p.add_argument("--name", default="gpu_bench.json")
    p.add_argument("--budget", type=float, default=320.0, help="total seconds for all workloads")
    p.add_argument("--cap", type=float, default=15.0, help="seconds at most per configuration's timing")
    p.add_argument("--workloads", default="D1,E1,P3,P1,S1,P1-32k,S1-128k",
                   help="comma-separated, run in this order: D1, E1 (decode step: append + decode, "
                   "eager and graph-replayed), P3, P1 (T = 8192), S1 (T = 32768), "
                   "P1-32k, S1-128k (S1 at T = 131072), P1-128k (not in the default list), G1 and G1-32k (the composite's backward at "
                   "T = 8192 and 32768 against the dense SDPA backward; not in the default list) "
                   "(default: %(default)s)")
    p.add_argument("--decode-batches", default="1,16,64,256")
    p.add_argument("--rows", type=int, default=10, help="sampled query rows checked per prefill")
    p.add_argument("--smoke", action="store_true", help="tiny shapes (a dry run of the code paths; "
                   "without a GPU: CPU tensors, wall clock, TRITON_INTERPRET=1, float16, and the "
                   "compiled functions replaced by the Triton kernel / reference)")
    p.add_argument("--child", help=argparse.SUPPRESS)      # internal: run one workload, write --part
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--copy-gbs", type=float, help=argparse.SUPPRESS)
    p.add_argument("--p1-ms", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--s1-prior", default="{}", help=argparse.SUPPRESS)
    a = p.parse_args()
    if torch is None:
        sys.exit("gpu_bench.py needs torch (and triton): run it on the GPU machine (bench/run_gpu_bench.sh)")
    if triton_sparsek is None:
        sys.exit("gpu_bench.py needs triton (bench/triton_sparsek.py could not be imported)")

    global _FLUSH, DEV, DTYPE
    if not torch.cuda.is_available():
        if not a.smoke:
            sys.exit("no CUDA device (use --smoke for a CPU dry run)")
        DEV, DTYPE = "cpu", torch.float16
    wls = SMOKE if a.smoke else WORKLOADS
    _FLUSH = torch.empty((256 if DEV == "cuda" else 1) * 2**20, dtype=torch.uint8, device=DEV)
    budget = Budget(a.budget, a.cap)

    if a.child:  # one workload in its own process: a crash (a CUDA fault) loses only this one
        ours = FakeOurs(a.artifacts, SMOKE) if (a.smoke and DEV == "cpu") else Ours(a.artifacts)
        part = {"results": [], "skipped": []}

        def save_part():
            with open(a.part, "w") as f:
                json.dump(part, f, indent=1, default=float)
        try:
            run_workload(a.child, a, wls, ours, budget, a.copy_gbs, json.loads(a.p1_ms), json.loads(a.s1_prior),
                         part, save_part)
        except Exception as e:
            traceback.print_exc()
            part["results"].append({"workload": a.child, "error": f"{type(e).__name__}: {e}"[:1000]})
        save_part()
        return

    with open(os.path.join(a.artifacts, "manifest.json")) as f:
        manifest = json.load(f)
    record = {"benchmark": "gpu_bench", "command": " ".join(["python3", "bench/gpu_bench.py"] + sys.argv[1:]),
              "invoked_as": os.environ.get("SPARSEK_BENCH_INVOCATION"),
              "environment": environment(a.artifacts),
              "method": __doc__.split("Timing:")[1].strip(),
              "artifacts_missing": {k: v.get("error", "not built") for k, v in manifest["families"].items()
                                    if "library" not in v},
              "results": [], "skipped": []}
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, a.name)

    def save():
        record["elapsed_s"] = round(time.time() - budget.t0, 1)
        with open(path, "w") as f:
            json.dump(record, f, indent=1, default=float)

    print(f"environment: {record['environment']}", flush=True)
    record["smoke"] = a.smoke
    record["copy_rate"] = copy_rate()
    copy_gbs = record["copy_rate"]["GBps"]
    print(f"device copy: {copy_gbs:.0f} GB/s", flush=True)
    save()

    p1_ours_ms, s1_prior = {}, {}
    for wl in a.workloads.split(","):
        left = budget.left()
        if left < 15:
            record["skipped"].append({"workload": wl, "why": f"total budget spent: {left:.0f} s of the "
                                      f"{a.budget:.0f} s left (< 15 s); a larger --budget runs it"})
            continue
        part_path = os.path.join(a.out, f".part_{wl}.json")
        if os.path.exists(part_path):
            os.remove(part_path)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", wl, "--part", part_path,
               "--artifacts", a.artifacts, "--budget", f"{left:.1f}", "--cap", str(a.cap),
               "--decode-batches", a.decode_batches, "--rows", str(a.rows),
               "--copy-gbs", str(copy_gbs), "--p1-ms", json.dumps(p1_ours_ms),
               "--s1-prior", json.dumps(s1_prior)] + (["--smoke"] if a.smoke else [])
        t0 = time.time()
        try:
            rc = subprocess.run(cmd, timeout=left + 60).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        part = {"results": [], "skipped": []}
        if os.path.exists(part_path):
            with open(part_path) as f:
                part = json.load(f)
            os.remove(part_path)
        if rc != 0:
            part["results"].append({"workload": wl, "error": f"child process for {wl} ended with {rc} after "
                                    f"{time.time() - t0:.0f} s (results above, if any, were saved before)"})
        record["results"] += part["results"]
        record["skipped"] += part["skipped"]
        if wl == "P1":
            for rec in part["results"]:
                if "impl" in rec:
                    p1_ours_ms = {n: rec["impl"][n].get("median_ms") for n in OURS_PREFILL if n in rec["impl"]}
        if wl == "S1":
            for rec in part["results"]:
                if "impl" in rec:
                    s1_prior = {"T": rec["shape"]["T"]}
                    s1_prior.update({f"{n}_ms": rec["impl"][n]["median_ms"] for n in ("torch_select", "ours_select")
                                     if rec["impl"].get(n, {}).get("median_ms")})
        link_select_to_p1(record)
        save()
    record["summary"] = summarize(record)
    save()
    for row in record["summary"]:
        print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in row.items() if k not in ("error", "skipped", "reduced"))
              + (f", skipped: {row['skipped'][:160]}" if "skipped" in row else "")
              + (f", ERROR: {row['error'][:160]}" if "error" in row else ""), flush=True)
    for rec in record["results"]:
        sv = rec.get("select_vs_p1_attention")
        if sv:
            print(f"  S1 T={sv.get('T')}: selection {sv.get('select_ms')} ms vs P1 attention "
                  + (sv["unavailable"] if "unavailable" in sv else
                     ", ".join(f"{k} {v:.3g}" for k, v in sv.get("ratios", {}).items())), flush=True)
    print(f"wrote {path} ({record['elapsed_s']} s)", flush=True)


if __name__ == "__main__":
    main()
