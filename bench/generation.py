#!/usr/bin/env python3
# Generation tokens/s on the GPU: a decoder-only model on SparseKAttention (the runtime's KV cache) against
# the same model on dense SDPA attention, in one process.
"""Generation throughput: SparseK attention against dense attention, same model, same process.

    python3 bench/generation.py --prebuild DIR      # here (compiler, no GPU): DIR/cache + the runtime
    python3 bench/generation.py --artifacts DIR --out FILE [--prompts 4096,32768] [--steps 128]

The model: embedding, `layers` pre-norm blocks (RMSNorm -> attention ->
residual -> RMSNorm -> ReLU MLP -> residual), RMSNorm and LM head, bf16
weights drawn at random. Two attentions over the same weights:
  sparsek  SparseKAttention (sparsek.nn): the layer compiled by
           sparsek-gpu-pipeline (projections, scoring network, selection,
           attention; the projections are the pipeline's linalg kernels, not
           cuBLAS), its prefill filling the runtime's CUDA KV cache of k + w
           slots per head, then one decode step per token over that cache;
  dense    torch: cuBLAS projections and scaled_dot_product_attention
           (causal over the prompt, then each token over a plain KV cache of
           growing length).
The rest of the model (norms, MLP, head) is the same torch code for both.
The default model has 4 layers, Hq = 16, Hkv = 4, D = 128 (C = 2048), an MLP
of 8192, 32000 tokens, k = 2048 and w = 512: about 0.3 B parameters, a dense
KV cache of 64 MiB per layer at 32k tokens (SparseK: 5 MiB, k + w slots).
For each prompt length: a prefill of the prompt (the last position's logits
give the first token), then `steps` greedy tokens, one decode step each, the
next token chosen on the GPU (no host synchronization inside the loop).
Timed with CUDA events: the prefill, and the decode loop as a whole (per
token: its time / steps); the median over `repeats` runs after one warm-up
run. Before timing, a short prompt within the window (every key in every
query's window, where SparseK attention is dense attention) checks that the
two models give the same logits (bf16 tolerance) and tokens.

--profile STEPS adds, per prompt and model, STEPS decode steps under
torch.profiler: per op and kernel, the host and device milliseconds of one
step (where a step's time goes when the GPU waits on the host).

Libraries come from the compiler's disk cache; on the GPU machine, without
LLVM, from the folder `--prebuild DIR` wrote here (DIR/cache and
DIR/libsparsek_runtime.so, used when --artifacts DIR names it). The layer
is compiled for sm_90a (H100, H200), the chip sparsek.gpu.default_pipeline()
picks there.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "examples"))

from sparsek.layer import attention_config  # noqa: E402
from tiny_transformer import use_carried_artifacts  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prebuild", metavar="DIR",
                   help="only compile the SparseK layer's GPU libraries into DIR/cache and copy the "
                        "runtime to DIR (needs the compiler, not a GPU or torch)")
    p.add_argument("--artifacts", metavar="DIR", default=os.path.join(ROOT, "build", "gpu-artifacts"),
                   help="without a compiler: the folder --prebuild wrote (its cache/ and runtime are "
                        "used unless SPARSEK_CACHE_DIR / SPARSEK_RUNTIME_LIB are set; default %(default)s)")
    p.add_argument("--out", metavar="FILE", help="write the JSON record here")
    p.add_argument("--prompts", default="4096,32768", help="prompt lengths (default %(default)s)")
    p.add_argument("--steps", type=int, default=128, help="generated tokens per run (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per prompt (default %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="sequences generated together (default %(default)s)")
    p.add_argument("--models", default="sparsek,dense", help="which models (default %(default)s)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="also run STEPS decode steps per prompt and model under torch.profiler and "
                        "record where one step's host and device time go, per op and kernel")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: a smoke run of the harness (SparseKAttention's CPU path, host clock; "
                        "use small sizes; the times mean nothing)")
    g = p.add_argument_group("model")
    g.add_argument("--layers", type=int, default=4)
    g.add_argument("--heads", type=int, default=16, help="query heads (default %(default)s)")
    g.add_argument("--kv-heads", type=int, default=4)
    g.add_argument("--head-dim", type=int, default=128)
    g.add_argument("--hidden", type=int, default=8192, help="MLP width (default %(default)s)")
    g.add_argument("--vocab", type=int, default=32000)
    g.add_argument("-k", type=int, default=2048, help="selection budget (default %(default)s)")
    g.add_argument("-w", type=int, default=512, help="sliding window (default %(default)s)")
    return p.parse_args(argv)


def layer_config(a):
    """The LayerConfig of the model's SparseKAttention (bf16, score bias, no slope)."""
    return attention_config(a.heads * a.head_dim, a.heads, a.kv_heads, a.head_dim, k=a.k, w=a.w,
                            score_bias=True, dtype="bf16")


def prebuild(folder, a):
    """Compiles the layer's GPU libraries into folder/cache and copies the runtime next to it."""
    from sparsek.compiled_layer import CompiledLayer
    from sparsek.kv_cache import library_path

    folder = os.path.abspath(folder)
    os.makedirs(os.path.join(folder, "cache"), exist_ok=True)
    os.environ["SPARSEK_CACHE_DIR"] = os.path.join(folder, "cache")
    os.environ.setdefault("SPARSEK_GPU_CHIP", "sm_90a")
    shutil.copy2(library_path(), folder)
    return CompiledLayer(layer_config(a)).prebuild(cpu=False)


class Model:
    """Embedding, blocks (norm1, attention, norm2, w1, w2), final norm and LM head; `attns`
    holds one attention per block (SparseKLayer or DenseLayer)."""

    def __init__(self, weights, attns):
        self.emb, self.norm, self.head = weights["emb"], weights["norm"], weights["head"]
        self.blocks = [dict(blk, attn=at) for blk, at in zip(weights["blocks"], attns)]

    def block(self, h, blk, state, i, step):
        h = h + step(blk["attn"])(rms(h, blk["norm1"]), state, i)
        x = rms(h, blk["norm2"])
        return h + (x @ blk["w1"]).relu_() @ blk["w2"]

    def logits(self, h):
        return rms(h, self.norm) @ self.head


def build_models(a, torch):
    """(sparsek model, dense model) over the same random bf16 weights, on the GPU, and the
    parameter count."""
    from sparsek.nn import SparseKAttention

    bf16, dev = torch.bfloat16, a.device
    C = a.heads * a.head_dim
    g = torch.Generator(device=dev).manual_seed(0)

    def normal(*shape, std):
        return (torch.randn(*shape, device=dev, generator=g) * std).to(bf16)
    ones = lambda: torch.ones(C, dtype=bf16, device=dev)  # noqa: E731
    weights = {"emb": normal(a.vocab, C, std=1.0), "norm": ones(), "head": normal(C, a.vocab, std=C ** -0.5),
               "blocks": [{"norm1": ones(), "norm2": ones(), "w1": normal(C, a.hidden, std=C ** -0.5),
                           "w2": normal(a.hidden, C, std=a.hidden ** -0.5)} for _ in range(a.layers)]}
    # Default initialization (scores of about unit spread, as SPEC 6's scalar state expects).
    attns = [SparseKAttention(C, a.heads, a.kv_heads, a.head_dim, k=a.k, w=a.w, dtype=bf16).to(dev)
             for _ in range(a.layers)]
    for at in attns:
        at.requires_grad_(False)
    cfg = layer_config(a)
    params = sum(t.numel() for t in (weights["emb"], weights["head"])) + sum(
        t.numel() for blk in weights["blocks"] for t in blk.values()) + sum(
        p.numel() for at in attns for p in at.parameters())
    return (Model(weights, [SparseKLayer(at, a.layers) for at in attns]),
            Model(weights, [DenseLayer(at, cfg, a.layers) for at in attns]), params)


def rms(x, g, eps=1e-5):
    import torch

    xf = x.float()
    return (xf * torch.rsqrt((xf * xf).mean(-1, keepdim=True) + eps)).to(x.dtype) * g


class SparseKLayer:
    """SparseKAttention with the runtime's KV cache (k + w slots per head)."""

    def __init__(self, attn, layers):
        self.attn, self.layers = attn, layers

    def new_cache(self, B, max_len):
        cache = self.attn.new_cache(max_seqs=B, num_layers=self.layers)
        return cache, [cache.alloc_seq() for _ in range(B)]

    def prefill(self, x, state, layer):
        cache, seqs = state
        return self.attn.prefill(x, cache, seqs, layer=layer)

    def decode(self, x, state, layer):
        cache, seqs = state
        return self.attn.decode(x, cache, seqs, layer=layer)

    @staticmethod
    def close(state):
        state[0].check_device_error()
        approximate = any(state[0].is_approximate(s) for s in state[1])
        state[0].close()
        return {"tau_approximate": approximate}


class DenseLayer:
    """The same projections in torch (cuBLAS) and SDPA over a plain KV cache of growing length."""

    def __init__(self, attn, cfg, layers):
        self.wq, self.wk, self.wv, self.wo = attn.wq, attn.wk, attn.wv, attn.wo
        self.cfg, self.layers = cfg, layers

    def new_cache(self, B, max_len):
        import torch

        c = self.cfg
        shape = (self.layers, B, c.Hkv, max_len, c.D)
        kv = [torch.empty(shape, dtype=self.wq.dtype, device=self.wq.device) for _ in range(2)]
        return {"k": kv[0], "v": kv[1], "len": [0] * self.layers}

    def _attend(self, x, state, layer):
        """x [B, T, C] at the positions after the cached ones -> [B, T, C]."""
        import torch

        c = self.cfg
        B, T, _ = x.shape
        q, key, value = ((x @ w).view(B, T, h, c.D).transpose(1, 2)
                         for w, h in ((self.wq, c.Hq), (self.wk, c.Hkv), (self.wv, c.Hkv)))
        start = state["len"][layer]
        end = state["len"][layer] = start + T
        state["k"][layer, :, :, start:end] = key
        state["v"][layer, :, :, start:end] = value
        o = torch.nn.functional.scaled_dot_product_attention(
            q, state["k"][layer, :, :, :end], state["v"][layer, :, :, :end],
            is_causal=T > 1, enable_gqa=c.Hq != c.Hkv)   # T > 1: the prompt, from position 0
        return o.transpose(1, 2).reshape(B, T, c.Hq * c.D) @ self.wo

    def prefill(self, x, state, layer):
        return self._attend(x, state, layer)

    def decode(self, x, state, layer):
        return self._attend(x[:, None], state, layer)[:, 0]

    @staticmethod
    def close(state):
        return {}


class Mark:
    """A point in time: a CUDA event on the current stream, or the host clock (--device cpu)."""

    def __init__(self, torch, dev):
        self.event = torch.cuda.Event(enable_timing=True) if dev == "cuda" else None

    def record(self):
        if self.event is not None:
            self.event.record()
        else:
            self.t = time.perf_counter()

    def ms_to(self, later):
        """Milliseconds from this mark to `later` (both recorded and, on the GPU, reached)."""
        if self.event is not None:
            return self.event.elapsed_time(later.event)
        return (later.t - self.t) * 1e3


def generate(model, prompt, steps, torch, events=None, force=None, profiler=None):
    """Greedy generation: the prompt [B, T] prefilled, then `steps` tokens. Returns (tokens
    [B, steps + 1], logits [steps + 1, B, vocab] when events is None, else None). `events`:
    (start, prefilled, end) Marks recorded around the prefill and the decode loop. `force`
    ([B, steps + 1] tokens): fed instead of the greedy ones (teacher forcing). `profiler`
    (a torch.profiler.profile) runs around the decode loop alone."""
    B, T = prompt.shape
    layer0 = model.blocks[0]["attn"]
    state = layer0.new_cache(B, T + steps + 1)
    keep = events is None
    with torch.no_grad():
        if events:
            events[0].record()
        h = model.emb[prompt]
        for i, blk in enumerate(model.blocks):
            h = model.block(h, blk, state, i, lambda at: at.prefill)
        logits = model.logits(h[:, -1])
        tokens, kept = [logits.argmax(-1)], [logits] if keep else None
        if events:
            events[1].record()
        if profiler is not None:
            if prompt.is_cuda:
                torch.cuda.synchronize()
            profiler.start()
        for i in range(steps):
            h = model.emb[tokens[-1] if force is None else force[:, i]]
            for i, blk in enumerate(model.blocks):
                h = model.block(h, blk, state, i, lambda at: at.decode)
            logits = model.logits(h)
            tokens.append(logits.argmax(-1))
            if keep:
                kept.append(logits)
        if events:
            events[2].record()
    if prompt.is_cuda:
        torch.cuda.synchronize()
    if profiler is not None:
        profiler.stop()
    info = layer0.close(state)
    return torch.stack(tokens, 1), (torch.stack(kept) if keep else None), info


def check_models(models, a, torch):
    """Within the window SparseK attention is dense attention: the two models' logits and
    tokens on a short prompt (bf16: 5e-2 of the logits' scale)."""
    T = min(256, max(8, a.w // 2))
    steps = min(8, max(1, a.w - T - 1))
    g = torch.Generator(device=a.device).manual_seed(1)
    prompt = torch.randint(0, a.vocab, (a.batch, T), device=a.device, generator=g)
    # Both models see the dense model's greedy tokens (teacher forcing): free-running, one
    # near-tie that bf16 rounding breaks differently would make every later step differ.
    t1, l1, _ = generate(models["dense"], prompt, steps, torch)
    t0, l0, _ = generate(models["sparsek"], prompt, steps, torch, force=t1)
    err = float((l0.float() - l1.float()).abs().max()) / max(1.0, float(l1.float().abs().max()))
    same = float((t0 == t1).float().mean())
    return {"prompt": T, "steps": steps, "logits_max_rel_err": err, "argmax_agree": same,
            "passed": err <= 5e-2,
            "note": "prompt + steps within the window w: SparseK == dense; both fed the dense "
                    "model's greedy tokens"}


def bench(model, name, T, a, torch):
    g = torch.Generator(device=a.device).manual_seed(T)
    prompt = torch.randint(0, a.vocab, (a.batch, T), device=a.device, generator=g)
    runs = []
    for r in range(a.repeats + 1):   # the first is the warm-up
        events = [Mark(torch, a.device) for _ in range(3)]
        t0 = time.perf_counter()
        _, _, info = generate(model, prompt, a.steps, torch, events)
        wall = time.perf_counter() - t0
        if r:
            runs.append({"prefill_ms": events[0].ms_to(events[1]), "decode_ms": events[1].ms_to(events[2]),
                         "wall_s": wall, **info})
    prefill = statistics.median(x["prefill_ms"] for x in runs)
    decode = statistics.median(x["decode_ms"] for x in runs) / a.steps
    rec = {"model": name, "prompt": T, "batch": a.batch, "steps": a.steps,
           "prefill_ms": prefill, "prefill_tokens_per_s": a.batch * T / prefill * 1e3,
           "decode_ms_per_step": decode, "decode_tokens_per_s": a.batch / decode * 1e3,
           "generation_tokens_per_s": a.batch * a.steps / (prefill + decode * a.steps) * 1e3,
           "runs": runs}
    print(f"[{name}] T={T}: prefill {prefill:.2f} ms ({rec['prefill_tokens_per_s']:.0f} tok/s), "
          f"decode {decode:.3f} ms/step ({rec['decode_tokens_per_s']:.1f} tok/s), "
          f"prefill + {a.steps} steps {rec['generation_tokens_per_s']:.1f} tok/s", flush=True)
    return rec


def profile_decode(model, name, T, a, torch):
    """`a.profile` decode steps after a prefill of T tokens under torch.profiler: per op (and
    kernel), host and device milliseconds per step, the largest first. Host time counts the
    Python and launch work a step spends in the op (inclusive), device time its kernels."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device == "cuda" else [])
    g = torch.Generator(device=a.device).manual_seed(T)
    prompt = torch.randint(0, a.vocab, (a.batch, T), device=a.device, generator=g)
    prof = profile(activities=acts)
    t0 = time.perf_counter()
    generate(model, prompt, a.profile, torch, events=[Mark(torch, a.device) for _ in range(3)],
             profiler=prof)
    rows = []
    for e in prof.key_averages():
        device = getattr(e, "self_device_time_total", None)
        if device is None:
            device = getattr(e, "self_cuda_time_total", 0)
        rows.append({"op": e.key, "calls_per_step": e.count / a.profile,
                     "host_ms": e.cpu_time_total / 1e3 / a.profile,
                     "host_self_ms": e.self_cpu_time_total / 1e3 / a.profile,
                     "device_ms": device / 1e3 / a.profile})
    rows.sort(key=lambda r: -max(r["host_self_ms"], r["device_ms"]))
    rows = rows[:30]
    print(f"[{name}] T={T}: one decode step under the profiler (of {a.profile}; "
          f"{(time.perf_counter() - t0) * 1e3:.0f} ms with the prefill), per op: "
          "calls, host ms (self), device ms")
    for r in rows:
        print(f"  {r['op'][:60]:60s} {r['calls_per_step']:6.1f} {r['host_ms']:8.3f} "
              f"({r['host_self_ms']:.3f}) {r['device_ms']:8.3f}")
    return {"model": name, "prompt": T, "steps": a.profile, "ops": rows}


def environment(torch, dev):
    def git(*args):
        try:
            return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True).stdout.strip()
        except OSError:
            return None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.split("\n")[0].strip() or None
    except OSError:
        driver = None
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain")), "driver": driver,
            "gpu": torch.cuda.get_device_name() if dev == "cuda" else None, "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "host": platform.node(), "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])}


def main():
    a = parse_args()
    if a.prebuild:
        paths = prebuild(a.prebuild, a)
        size = sum(os.path.getsize(p) for p in paths) / 2**20
        print(f"{len(paths)} libraries ({size:.1f} MiB) in {os.path.abspath(a.prebuild)}/cache, "
              f"and the runtime")
        return 0
    try:
        import torch
    except ImportError:
        print("bench/generation.py needs torch with CUDA (only --prebuild runs without it)")
        return 2
    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench/generation.py: torch sees no CUDA device")
        return 2
    use_carried_artifacts(a.artifacts)
    names = a.models.split(",")
    sk, dense, params = build_models(a, torch)
    models = {n: m for n, m in (("sparsek", sk), ("dense", dense)) if n in names}
    shape = {n: getattr(a, n) for n in ("layers", "heads", "kv_heads", "head_dim", "hidden", "vocab", "k", "w")}
    record = {**environment(torch, a.device), "model": dict(shape, params=params), "dtype": "bf16",
              "results": []}
    if len(models) == 2:
        record["check"] = check_models(models, a, torch)
        print(f"check: {record['check']}", flush=True)
    for T in (int(x) for x in a.prompts.split(",")):
        for name, m in models.items():
            record["results"].append(bench(m, name, T, a, torch))
            if a.profile:
                record.setdefault("profiles", []).append(profile_decode(m, name, T, a, torch))
        by = {r["model"]: r for r in record["results"] if r["prompt"] == T}
        if len(by) == 2:
            ratios = {f"{key} sparsek / dense": by["sparsek"][key] / by["dense"][key]
                      for key in ("decode_tokens_per_s", "prefill_tokens_per_s", "generation_tokens_per_s")}
            record.setdefault("ratios", {})[str(T)] = ratios
            print(f"T={T}: {ratios}", flush=True)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
