#!/usr/bin/env python3
# Trains the tiny transformer with SparseK attention on needle retrieval beyond the window, against dense and window-only (k = 0) attention.
"""Train the tiny SparseK transformer on a task that needs long-range retrieval.

    python3 examples/train_tiny.py [--steps N] [--seed S] [--device cpu|cuda] [--plot FILE]
    python3 examples/train_tiny.py --prebuild DIR    # the GPU libraries of --device cuda, ahead

The task (data made here): a sequence of T noise tokens holds one needle, a
token of a separate range of V values, at a random position at least
2 w + 1 tokens before the last token, QUERY, where the model must name the
needle. Only the loss at QUERY counts (cross-entropy over the vocabulary).
The needle is outside QUERY's sliding window and outside the windows of
every position in it, so:
- window-only attention (k = 0) cannot see it, in either of the two
  layers, and stays near ln V, the loss of guessing among the V values;
- SparseK attention (k > 0) can, once its scores rank the needle (or, in
  the second layer, a position whose window held it) among the top k of
  QUERY's candidates. Scores learn through du (the gate gradients, SPEC 5)
  and through the hidden states they are computed from;
- dense attention (k >= S, which is exactly dense causal attention, SPEC
  5) is the baseline that sees everything.

--ablate-score-grad adds a fourth run with the scores detached (no du):
in this small task it still learns, a little more slowly, since the hidden
states that the scores read are also trained through keys and values.

The three models are the tiny transformer of examples/tiny_transformer.py
(same weights at the start, same data) with k = the SparseK budget, k = 0
and k = T. The three loss curves are printed (and plotted with --plot when
matplotlib is present); the run fails unless SparseK and dense attention
end below --threshold and window-only attention ends above it.

The attention and scoring ops run compiled (forward and backward,
sparsek.autograd): on the CPU, or with --device cuda on the GPU (the
gradient ops' GPU lowering; the libraries come from the compiler's disk
cache, so a GPU machine without LLVM needs them prebuilt:
--prebuild DIR compiles them there, no GPU needed).
"""

import argparse
import contextlib
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "examples"))

from tiny_transformer import TinyConfig, init_weights, torch_model, use_carried_artifacts  # noqa: E402

NOISE = 32  # noise tokens 0..NOISE-1
VALUES = 16  # needle tokens NOISE..NOISE+VALUES-1
QUERY = NOISE + VALUES
VOCAB = QUERY + 1


def batch(torch, g, size, length, window):
    """Token sequences [size, length] and their targets [size] (the needle)."""
    tokens = torch.randint(0, NOISE, (size, length), generator=g)
    needle = torch.randint(NOISE, NOISE + VALUES, (size,), generator=g)
    # The needle sits before QUERY's window (and before any window of the
    # positions that QUERY's window holds).
    where = torch.randint(0, length - 1 - 2 * window, (size,), generator=g)
    tokens[torch.arange(size), where] = needle
    tokens[:, -1] = QUERY
    return tokens, needle


@contextlib.contextmanager
def scores_detached(enabled):
    """While enabled, the layers' scores u carry no gradient: selection and gates still come
    from u, but nothing learns through them (neither the scoring network nor, through it,
    the embeddings). The ablation of what du contributes."""
    if not enabled:
        yield
        return
    import sparsek.autograd

    score = sparsek.autograd.score
    sparsek.autograd.score = lambda *a, **kw: score(*a, **kw).detach()
    try:
        yield
    finally:
        sparsek.autograd.score = score


def train(torch, cfg, weights, k, args, detach_scores=False):
    """Trains the tiny transformer with budget k; returns its loss curve (one value per step)."""
    model_cfg = TinyConfig(vocab=VOCAB, C=cfg.C, layers=cfg.layers, Hq=cfg.Hq, Hkv=cfg.Hkv, D=cfg.D,
                           k=k, w=cfg.w, hidden=cfg.hidden)
    model = torch_model(model_cfg, weights, args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed + 1)  # the same data for every model
    rms = lambda x, w: x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w  # noqa: E731
    curve = []
    for _ in range(args.steps):
        tokens, target = batch(torch, g, args.batch, args.length, cfg.w)
        tokens, target = tokens.to(args.device), target.to(args.device)
        h = model.emb[tokens]
        with scores_detached(detach_scores):
            for b in model.blocks:
                h = h + b.attn(rms(h, b.norm1))
                h = h + b.mlp(rms(h, b.norm2))
        logits = model.logits(h[:, -1])
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(float(loss.detach()))
    return curve


def prebuild_cuda(folder, args):
    """Compiles the GPU forward and gradient libraries of the three (or four) models into the disk
    cache `folder`; returns their paths."""
    from sparsek import grad_libraries

    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    os.environ["SPARSEK_CACHE_DIR"] = folder
    cfg = TinyConfig()
    paths = []
    for k in (args.k, args.length, 0):
        paths += grad_libraries.prebuild_cuda(k, cfg.w, cfg.D, "f32", bias=True, slope=True)
    return paths


def smooth(curve, n=20):
    """Mean of the last n values at every step: the curves are noisy batch losses."""
    return [sum(curve[max(0, i - n + 1): i + 1]) / len(curve[max(0, i - n + 1): i + 1])
            for i in range(len(curve))]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=24, help="tokens per sequence (T)")
    parser.add_argument("--k", type=int, default=4, help="the SparseK budget")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=1.0,
                        help="final loss (mean of the last 20 steps) that SparseK and dense must beat "
                             "and window-only must not (ln %d = %.2f is guessing)" % (VALUES, math.log(VALUES)))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--plot", metavar="FILE", help="also plot the curves into FILE (needs matplotlib)")
    parser.add_argument("--prebuild", metavar="DIR",
                        help="only compile the GPU libraries that --device cuda loads into the disk "
                             "cache DIR (no GPU, no torch needed); on the GPU machine set "
                             "SPARSEK_CACHE_DIR=DIR (and SPARSEK_RUNTIME_LIB) to serve them")
    parser.add_argument("--ablate-score-grad", action="store_true",
                        help="also train SparseK with its scores detached (no du; not asserted): "
                             "what the score gradients contribute")
    return parser.parse_args(argv)


def main():
    args = parse_args()
    if args.prebuild:
        paths = prebuild_cuda(args.prebuild, args)
        print(f"{len(paths)} GPU libraries in {os.path.abspath(args.prebuild)}")
        return 0
    try:
        import torch
    except ImportError:
        print("train_tiny.py needs torch, which is not installed")
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device")
        return 2
    if args.device == "cuda":  # a GPU machine without LLVM: the carried libraries
        use_carried_artifacts(os.path.join(ROOT, "build", "gpu-artifacts"))
    torch.manual_seed(args.seed)
    # Tiny matrices: one thread avoids synchronization that costs more than it saves,
    # above all on a shared CI machine.
    torch.set_num_threads(1)
    cfg = TinyConfig()
    if args.length <= 2 * cfg.w + 1 or args.length <= cfg.layers * cfg.w:
        print(f"--length must exceed 2 w + 1 = {2 * cfg.w + 1} and layers * w = {cfg.layers * cfg.w}")
        return 2
    weights = init_weights(TinyConfig(vocab=VOCAB), args.seed)
    runs = {"sparsek": args.k, "dense": args.length, "window-only": 0}
    if args.ablate_score_grad:
        runs["no-score-grad"] = args.k
    curves = {}
    for name, k in runs.items():
        start = time.time()
        try:
            curves[name] = smooth(train(torch, cfg, weights, k, args, detach_scores=name == "no-score-grad"))
        except (RuntimeError, NotImplementedError) as e:
            print(f"{name} (k = {k}) on {args.device}: {e}")
            return 2
        print(f"{name:12s} k = {k:3d}  w = {cfg.w}: final loss {curves[name][-1]:.3f}  "
              f"({time.time() - start:.0f} s)")

    print(f"\nloss curves (mean of 20 batches), T = {args.length}, batch {args.batch}:")
    print("step  " + "".join(f"{n:>13s}" for n in curves))
    for i in list(range(0, args.steps, max(1, args.steps // 16))) + [args.steps - 1]:
        print(f"{i + 1:4d}  " + "".join(f"{c[i]:13.3f}" for c in curves.values()))
    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("--plot: matplotlib is not installed, no plot")
        else:
            for name, c in curves.items():
                plt.plot(range(1, len(c) + 1), c, label=f"{name} (k = {runs[name]})")
            plt.axhline(args.threshold, color="gray", linestyle=":", label="threshold")
            plt.xlabel("step")
            plt.ylabel("loss at QUERY")
            plt.legend()
            plt.savefig(args.plot)
            print(f"plot in {args.plot}")

    final = {n: c[-1] for n, c in curves.items()}
    ok = (final["sparsek"] < args.threshold and final["dense"] < args.threshold
          and final["window-only"] > args.threshold)
    print(f"\nthreshold {args.threshold}: sparsek {final['sparsek']:.3f}, dense {final['dense']:.3f} below; "
          f"window-only {final['window-only']:.3f} above: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
