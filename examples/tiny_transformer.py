#!/usr/bin/env python3
# A tiny causal transformer (random seeded weights) whose attention is SparseKAttention; generates tokens on the CPU or the GPU.
"""Generate tokens with a tiny SparseK transformer, and check its logits.

    python3 examples/tiny_transformer.py [--steps N] [--seed S] [--device cpu|cuda]
    python3 examples/tiny_transformer.py --prebuild DIR   # compile ahead into DIR (no GPU, no torch)

Each block is RMSNorm -> SparseKAttention (compiled CPU layer, KV cache of
the runtime) -> residual -> RMSNorm -> ReLU MLP -> residual; the LM head is
a separate projection. The prompt is prefilled, then tokens are generated
greedily one at a time through the KV cache. The logits of every step are
compared with a float64 numpy forward over the whole sequence (teacher
forcing: the reference sees the tokens that were generated).

With --device cuda the model runs on the GPU: SparseKAttention calls the
layer compiled by sparsek-gpu-pipeline over a CUDA KV cache, on torch's
current stream, with no host copies. The CPU path is then run on the GPU's
tokens (teacher forcing), and the two are compared: whether the CPU would
have picked the same tokens, and the max difference of their logits.

Compiled libraries come from the compiler's disk cache ($SPARSEK_CACHE_DIR).
A GPU machine has no LLVM, so compile here and carry the folder there:

    bash scripts/build-gpu-artifacts.sh      # here: build/gpu-artifacts, its cache/ included
    # on the GPU machine, with build/gpu-artifacts carried (no compiler there, so
    # its cache/ and libsparsek_runtime.so are used; --artifacts DIR elsewhere):
    python3 examples/tiny_transformer.py --device cuda

(`--prebuild DIR` compiles only this model's libraries into the cache DIR.)

The numeric core (`reference_logits`, `generate_numpy`) needs only numpy
and is what the Python tests check; the torch model needs torch and is
skipped, with a message, where torch is missing.
"""

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

from sparsek.compiled_layer import CompiledLayer  # noqa: E402
from sparsek.kv_cache import KVCache  # noqa: E402
from sparsek.layer import LayerConfig, reference_prefill  # noqa: E402


@dataclass(frozen=True)
class TinyConfig:
    vocab: int = 64
    C: int = 32
    layers: int = 2
    Hq: int = 4
    Hkv: int = 2
    D: int = 8
    k: int = 6
    w: int = 4
    hidden: int = 64

    def attention(self):
        return LayerConfig(C=self.C, Hq=self.Hq, Hkv=self.Hkv, D=self.D, k=self.k, w=self.w, bias=True,
                           slope=True)

    def model(self):
        """The same model as one MLIR function (sparsek.model.ModelConfig)."""
        from sparsek.model import ModelConfig

        return ModelConfig(**dataclasses.asdict(self))


def init_weights(cfg, seed=0):
    """Seeded random weights (float32), one dict per layer plus the embedding."""
    g = np.random.default_rng(seed)
    f32 = lambda *s, std=1.0: (g.normal(size=s) * std).astype(np.float32)  # noqa: E731
    layers = []
    for _ in range(cfg.layers):
        attn = {n: f32(*s, std=s[-1] ** -0.5 if n == "wsc" else s[0] ** -0.5)
                for n, s in cfg.attention().weight_shapes().items()}
        attn["bias"], attn["slope"] = f32(cfg.Hkv), f32(cfg.Hkv, std=0.02)
        layers.append({"attn": attn, "norm1": 1 + f32(cfg.C, std=0.1), "norm2": 1 + f32(cfg.C, std=0.1),
                       "w1": f32(cfg.C, cfg.hidden, std=cfg.C ** -0.5),
                       "w2": f32(cfg.hidden, cfg.C, std=cfg.hidden ** -0.5)})
    return {"emb": f32(cfg.vocab, cfg.C), "layers": layers, "norm": 1 + f32(cfg.C, std=0.1),
            "head": f32(cfg.C, cfg.vocab, std=cfg.C ** -0.5)}


def rms_norm(x, g, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def mlp(x, lw):
    return np.maximum(x @ lw["w1"], 0) @ lw["w2"]


def reference_logits(cfg, weights, tokens):
    """float64 logits [T, vocab] of the whole sequence `tokens` (teacher forcing)."""
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    h = f64(weights["emb"])[np.asarray(tokens)][None]
    for lw in weights["layers"]:
        h = h + reference_prefill(cfg.attention(), rms_norm(h, f64(lw["norm1"])), lw["attn"])[0]
        h = h + mlp(rms_norm(h, f64(lw["norm2"])), {n: f64(lw[n]) for n in ("w1", "w2")})
    return (rms_norm(h, f64(weights["norm"])) @ f64(weights["head"]))[0]


def generate_numpy(cfg, weights, prompt, steps):
    """Greedy generation through the compiled layer and the KV cache, in float32 numpy.

    Returns (tokens, logits [len(tokens) - 1, vocab]): row t holds the logits
    computed after token t, which predict token t + 1.
    """
    layer = CompiledLayer(cfg.attention())
    f32 = np.float32
    with KVCache(cfg.layers, cfg.Hkv, cfg.k, cfg.w, cfg.D, max_seqs=1) as cache:
        seq = [cache.alloc_seq()]
        h = weights["emb"][np.asarray(prompt)][None]
        for i, lw in enumerate(weights["layers"]):
            out, key, value, u = layer(rms_norm(h, lw["norm1"]).astype(f32), lw["attn"], return_kv=True)
            layer.fill_cache(cache, i, seq, key, value, u)
            h = h + out
            h = (h + mlp(rms_norm(h, lw["norm2"]), lw)).astype(f32)
        logits = list((rms_norm(h, weights["norm"]) @ weights["head"])[0])
        tokens = list(prompt)
        for _ in range(steps):
            tokens.append(int(np.argmax(logits[-1])))
            h = weights["emb"][tokens[-1]][None]
            for i, lw in enumerate(weights["layers"]):
                h = h + layer.decode(rms_norm(h, lw["norm1"]).astype(f32), lw["attn"], cache, i, seq)
                h = (h + mlp(rms_norm(h, lw["norm2"]), lw)).astype(f32)
            logits.append((rms_norm(h, weights["norm"]) @ weights["head"])[0])
    return tokens, np.array(logits[:-1])


def logits_error(got, want):
    """Max |got - want| relative to the logits' scale (f32 path vs float64)."""
    return float(np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want))))


def prebuild(folder, cfg=None):
    """Compiles the model's CPU and GPU libraries into the disk cache `folder`
    (needs the compiler and the runtime built with CUDA, not a GPU); returns their paths."""
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    os.environ["SPARSEK_CACHE_DIR"] = folder
    return CompiledLayer((cfg or TinyConfig()).attention()).prebuild()


def use_carried_artifacts(folder):
    """On a machine without the compiler, serve libraries from `folder`/cache and load
    `folder`/libsparsek_runtime.so (scripts/build-gpu-artifacts.sh), unless set otherwise."""
    from sparsek import compiler

    if compiler.available() or not os.path.isdir(os.path.join(folder, "cache")):
        return
    os.environ.setdefault("SPARSEK_CACHE_DIR", os.path.abspath(os.path.join(folder, "cache")))
    runtime = os.path.join(folder, "libsparsek_runtime.so")
    if os.path.isfile(runtime):
        os.environ.setdefault("SPARSEK_RUNTIME_LIB", os.path.abspath(runtime))


def torch_model(cfg, weights, device="cpu"):
    """The same model as a torch.nn.Module using SparseKAttention (needs torch), on `device`."""
    import torch

    from sparsek.nn import SparseKAttention

    class Block(torch.nn.Module):
        def __init__(self, lw):
            super().__init__()
            a = cfg.attention()
            self.attn = SparseKAttention(a.C, a.Hq, a.Hkv, a.D, k=a.k, w=a.w, score_slope=True)
            t = lambda n: torch.nn.Parameter(torch.from_numpy(lw[n].copy()))  # noqa: E731
            with torch.no_grad():
                for name, param in (("wq", self.attn.wq), ("wk", self.attn.wk), ("wv", self.attn.wv),
                                    ("wsc", self.attn.wsc), ("bias", self.attn.score_bias),
                                    ("slope", self.attn.score_slope), ("wo", self.attn.wo)):
                    param.copy_(torch.from_numpy(lw["attn"][name]))
            self.norm1, self.norm2, self.w1, self.w2 = t("norm1"), t("norm2"), t("w1"), t("w2")

        def mlp(self, x):
            return torch.relu(x @ self.w1) @ self.w2

    def rms(x, g):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g

    class TinyTransformer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Parameter(torch.from_numpy(weights["emb"].copy()))
            self.norm = torch.nn.Parameter(torch.from_numpy(weights["norm"].copy()))
            self.head = torch.nn.Parameter(torch.from_numpy(weights["head"].copy()))
            self.blocks = torch.nn.ModuleList(Block(lw) for lw in weights["layers"])

        def logits(self, h):
            return rms(h, self.norm) @ self.head

        @torch.no_grad()
        def generate(self, prompt, steps, force=None):
            """Greedy tokens and logits [len(tokens) - 1, vocab] (as generate_numpy), on the
            module's device. With `force` (a whole token sequence), feeds those tokens
            instead of the greedy ones (teacher forcing)."""
            device = self.emb.device
            cache = self.blocks[0].attn.new_cache(max_seqs=1, num_layers=cfg.layers)
            seq = [cache.alloc_seq()]
            h = self.emb[torch.tensor(prompt, device=device)][None]
            for i, b in enumerate(self.blocks):
                h = h + b.attn.prefill(rms(h, b.norm1), cache, seq, layer=i)
                h = h + b.mlp(rms(h, b.norm2))
            logits = list(self.logits(h)[0])
            tokens = list(prompt)
            for _ in range(steps):
                nxt = force[len(tokens)] if force is not None else int(torch.argmax(logits[-1]))
                tokens.append(nxt)
                h = self.emb[tokens[-1]][None]
                for i, b in enumerate(self.blocks):
                    h = h + b.attn.decode(rms(h, b.norm1), cache, seq, layer=i)
                    h = h + b.mlp(rms(h, b.norm2))
                logits.append(self.logits(h)[0])
            cache.close()
            return tokens, torch.stack(logits[:-1])

    return TinyTransformer().to(device)


def compare_devices(cfg, weights, prompt, steps):
    """Generates on the GPU, then runs the CPU path on the GPU's tokens (teacher forcing).

    Returns (tokens, gpu logits, cpu logits) as numpy arrays, and the CPU's own
    greedy choices at every generated step."""
    gpu_tokens, gpu_logits = torch_model(cfg, weights, "cuda").generate(prompt, steps)
    cpu_tokens, cpu_logits = torch_model(cfg, weights, "cpu").generate(prompt, steps, force=gpu_tokens)
    assert cpu_tokens == gpu_tokens
    gpu_logits, cpu_logits = gpu_logits.cpu().numpy(), cpu_logits.numpy()
    cpu_choices = [int(np.argmax(row)) for row in cpu_logits[len(prompt) - 1:]]
    return gpu_tokens, gpu_logits, cpu_logits, cpu_choices


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: generate on the GPU and compare with the CPU path")
    parser.add_argument("--artifacts", metavar="DIR", default=os.path.join(ROOT, "build", "gpu-artifacts"),
                        help="without a compiler: the carried folder of scripts/build-gpu-artifacts.sh "
                             "(its cache/ and runtime are used unless SPARSEK_CACHE_DIR / "
                             "SPARSEK_RUNTIME_LIB are set; default %(default)s)")
    parser.add_argument("--prebuild", metavar="DIR",
                        help="only compile the CPU and GPU libraries into the cache folder DIR")
    args = parser.parse_args()
    cfg = TinyConfig()
    if args.prebuild:
        paths = prebuild(args.prebuild, cfg)
        print(f"{len(paths)} libraries in {os.path.abspath(args.prebuild)}")
        return 0
    use_carried_artifacts(args.artifacts)
    weights = init_weights(cfg, args.seed)
    prompt = [int(t) for t in np.random.default_rng(args.seed + 1).integers(0, cfg.vocab, size=12)]

    try:
        import torch
    except ImportError:
        if args.device == "cuda":
            print("--device cuda needs torch with CUDA, which is not installed")
            return 2
        print("torch is not installed: skipping the torch model; running the numpy core instead")
        tokens, logits = generate_numpy(cfg, weights, prompt, args.steps)
        path = "numpy core"
    else:
        if args.device == "cuda" and not torch.cuda.is_available():
            print("--device cuda: torch sees no CUDA device")
            return 2
        if args.device == "cuda":
            tokens, logits, cpu_logits, cpu_choices = compare_devices(cfg, weights, prompt, args.steps)
            path = f"torch SparseKAttention on {torch.cuda.get_device_name()}"
        else:
            tokens, logits = torch_model(cfg, weights).generate(prompt, args.steps)
            logits = logits.numpy()
            path = "torch SparseKAttention on the CPU"
    print(f"{path}: prompt {prompt}")
    print(f"generated {tokens[len(prompt):]}")
    err = logits_error(logits, reference_logits(cfg, weights, tokens)[:-1])
    ok = err <= args.tolerance
    print(f"teacher-forced logits vs float64 reference: max rel error {err:.2e} "
          f"(tolerance {args.tolerance:.0e}) {'OK' if ok else 'MISMATCH'}")
    if args.device == "cuda":
        same = cpu_choices == tokens[len(prompt):]
        diff = logits_error(logits, cpu_logits)
        agree = same and diff <= args.tolerance
        print(f"GPU vs CPU path: tokens {'identical' if same else 'DIFFER'}, logits max rel difference "
              f"{diff:.2e} (max abs {np.max(np.abs(logits - cpu_logits)):.2e}) "
              f"{'OK' if agree else 'MISMATCH'}")
        ok = ok and agree
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
