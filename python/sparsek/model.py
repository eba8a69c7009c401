# A whole decoder-only SparseK transformer as one MLIR module (tokens -> logits), from a config.
"""A small decoder-only transformer with SparseK attention, as one MLIR function.

    cfg = ModelConfig(vocab=64, C=32, layers=2, Hq=4, Hkv=2, D=8, k=6, w=4, hidden=64)
    text = model_module(cfg)                       # MLIR: func @sparsek_model
    model = CompiledModel(cfg)                     # compiled for the CPU (sparsek-cpu-pipeline)
    logits = model(tokens, weights)                # tokens [B, T] int32 -> [B, T, vocab] f32
    gpu = CompiledModel(cfg, device="cuda")        # sparsek.gpu.default_pipeline(); torch CUDA tensors
    logits = gpu(tokens, gpu.weights(weights))     # [B, T, vocab] f32 CUDA tensor

Each block is pre-norm: h += attention(rms_norm(h, norm1)), then
h += relu(rms_norm(h, norm2) @ w1) @ w2; logits = rms_norm(h, norm) @ head.
The attention is the SparseK layer of `sparsek.layer` (projections, scoring
network with bias and slope, selection and sparse attention, output
projection). Weights are the function's arguments, in `ModelConfig.weight_args`
order: emb [vocab, C], per block norm1 [C], the attention weights
(`LayerConfig.weight_names`), norm2 [C], w1 [C, hidden], w2 [hidden, C], then
norm [C], head [C, vocab]. `weights` dicts have the layout of
examples/tiny_transformer.py: {"emb", "layers": [{"norm1", "attn": {...},
"norm2", "w1", "w2"}], "norm", "head"}. B and T are dynamic. f32 throughout.

On the GPU the whole function is one compiled library (sparsek-gpu-pipeline:
the linalg ops as parallel-loop kernels, the attention on the composite
op's kernels, intermediates in device memory); `CompiledModel(cfg,
device="cuda")` calls it through sparsek.gpu.GPULibrary on torch's current
stream, or loads a prebuilt library (`library=PATH`, e.g. the
`model_library` of scripts/gpu_artifacts.py) on a machine without the
compiler.
"""

from dataclasses import dataclass

import numpy as np

from . import ir
from .layer import LayerConfig, _Body, _contract, _empty, _func, _map, attention_body

_F32 = "f32"


@dataclass(frozen=True)
class ModelConfig:
    vocab: int
    C: int
    layers: int
    Hq: int
    Hkv: int
    D: int
    k: int
    w: int
    hidden: int
    eps: float = 1e-5

    def __post_init__(self):
        for name in ("vocab", "C", "layers", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.attention()  # validates the attention shapes

    def attention(self):
        return LayerConfig(C=self.C, Hq=self.Hq, Hkv=self.Hkv, D=self.D, k=self.k, w=self.w,
                           bias=True, slope=True)

    def weight_args(self):
        """(name, shape) of every weight argument, in call order."""
        att = self.attention().weight_shapes()
        args = [("emb", (self.vocab, self.C))]
        for i in range(self.layers):
            args += [(f"l{i}_norm1", (self.C,))]
            args += [(f"l{i}_{n}", s) for n, s in att.items()]
            args += [(f"l{i}_norm2", (self.C,)), (f"l{i}_w1", (self.C, self.hidden)),
                     (f"l{i}_w2", (self.hidden, self.C))]
        return args + [("norm", (self.C,)), ("head", (self.C, self.vocab))]

    def ordered(self, weights):
        """The values of a tiny_transformer-style weights dict in weight_args() order, as given."""
        out = [weights["emb"]]
        for lw in weights["layers"]:
            out += [lw["norm1"]] + [lw["attn"][n] for n in self.attention().weight_names()]
            out += [lw["norm2"], lw["w1"], lw["w2"]]
        out += [weights["norm"], weights["head"]]
        if len(out) != len(self.weight_args()):
            raise ValueError(f"weights hold {len(weights['layers'])} layers, the config {self.layers}")
        return out

    def flatten(self, weights):
        """The arguments of weight_args() from a tiny_transformer-style weights dict (f32)."""
        arrays = []
        for (name, shape), a in zip(self.weight_args(), self.ordered(weights)):
            a = np.ascontiguousarray(a, dtype=np.float32)
            if a.shape != tuple(shape):
                raise ValueError(f"weight {name}: expected shape {tuple(shape)}, got {a.shape}")
            arrays.append(a)
        return arrays


def _generic(body, ins, out, out_t, ndims, iters, region):
    """A linalg.generic: ins = [(value, type, exprs, element)], out = (value, exprs);
    `region(args)` emits the body given the block argument names and returns the yielded value."""
    maps = ", ".join(_map(ndims, e) for _, _, e, _ in ins) + ", " + _map(ndims, out[1])
    iters = ", ".join(f'"{i}"' for i in iters)
    name = body.fresh("g")
    ins_text = ", ".join(v for v, _, _, _ in ins)
    types = ", ".join(t for _, t, _, _ in ins)
    body.emit(f"{name} = linalg.generic {{indexing_maps = [{maps}], iterator_types = [{iters}]}} "
              f"ins({ins_text} : {types}) outs({out[0]} : {out_t}) {{")
    args = [f"%a{i}" for i in range(len(ins))] + ["%acc"]
    body.emit(f"^bb0({', '.join(f'{a}: {e}' for a, (_, _, _, e) in zip(args, ins))}, %acc: f32):")
    body.emit(f"  linalg.yield {region(args)} : f32")
    body.emit(f"}} -> {out_t}")
    return name


def _embed(body, cfg, tokens, tok_t, emb, h_t):
    """h [b, t, c] = emb[clamp(tokens[b, t]), c] (tokens are range-checked by the caller;
    the clamp keeps the load in bounds whatever they hold)."""
    def region(args):
        body.emit(f"  %tok = arith.index_cast {args[0]} : i32 to index")
        body.emit("  %lo = arith.maxsi %tok, %c0 : index")
        body.emit("  %row = arith.minsi %lo, %vmax : index")
        body.emit("  %col = linalg.index 2 : index")
        body.emit(f"  %e = tensor.extract {emb}[%row, %col] : {ir.tensor([cfg.vocab, cfg.C], _F32)}")
        return "%e"
    return _generic(body, [(tokens, tok_t, ["d0", "d1"], "i32")], (_empty(body, h_t, ["%nb", "%nt"]),
                    ["d0", "d1", "d2"]), h_t, 3, ["parallel"] * 3, region)


def _rms_norm(body, cfg, h, h_t, g):
    """h / sqrt(mean(h^2) + eps) * g over the last axis."""
    bt_t = ir.tensor([None, None], _F32)
    zero = body.fresh("zero")
    body.emit(f"{zero} = linalg.fill ins(%f0 : f32) outs({_empty(body, bt_t, ['%nb', '%nt'])} : {bt_t}) "
              f"-> {bt_t}")

    def square_sum(args):
        body.emit(f"  %sq = arith.mulf {args[0]}, {args[0]} : f32")
        body.emit("  %ss = arith.addf %acc, %sq : f32")
        return "%ss"
    ss = _generic(body, [(h, h_t, ["d0", "d1", "d2"], _F32)], (zero, ["d0", "d1"]), bt_t, 3,
                  ["parallel", "parallel", "reduction"], square_sum)

    def scale(args):
        body.emit(f"  %mean = arith.divf {args[1]}, %fC : f32")
        body.emit("  %var = arith.addf %mean, %eps : f32")
        body.emit("  %root = math.sqrt %var : f32")
        body.emit(f"  %n = arith.divf {args[0]}, %root : f32")
        body.emit(f"  %y = arith.mulf %n, {args[2]} : f32")
        return "%y"
    return _generic(body, [(h, h_t, ["d0", "d1", "d2"], _F32), (ss, bt_t, ["d0", "d1"], _F32),
                           (g, ir.tensor([cfg.C], _F32), ["d2"], _F32)],
                    (_empty(body, h_t, ["%nb", "%nt"]), ["d0", "d1", "d2"]), h_t, 3, ["parallel"] * 3, scale)


def _add(body, a, b, h_t):
    def region(args):
        body.emit(f"  %sum = arith.addf {args[0]}, {args[1]} : f32")
        return "%sum"
    ident = ["d0", "d1", "d2"]
    return _generic(body, [(a, h_t, ident, _F32), (b, h_t, ident, _F32)],
                    (_empty(body, h_t, ["%nb", "%nt"]), ident), h_t, 3, ["parallel"] * 3, region)


def _matmul(body, x, x_t, w, w_t, n, init=None):
    """[b, t, n] = x [b, t, c] @ w [c, n] (f32), accumulated into `init` when given."""
    out_t = ir.tensor([None, None, n], _F32)
    return _contract(body, (x, x_t, ["d0", "d1", "d3"]), (w, w_t, ["d3", "d2"]), out_t,
                     ["d0", "d1", "d2"], {3}, _F32, ["%nb", "%nt"], init=init), out_t


def _mlp(body, cfg, x, x_t, w1, w2):
    hid, hid_t = _matmul(body, x, x_t, w1, ir.tensor([cfg.C, cfg.hidden], _F32), cfg.hidden)

    def relu(args):
        body.emit(f"  %r = arith.maximumf {args[0]}, %f0 : f32")
        return "%r"
    ident = ["d0", "d1", "d2"]
    act = _generic(body, [(hid, hid_t, ident, _F32)], (_empty(body, hid_t, ["%nb", "%nt"]), ident), hid_t, 3,
                   ["parallel"] * 3, relu)
    out, _ = _matmul(body, act, hid_t, w2, ir.tensor([cfg.hidden, cfg.C], _F32), cfg.C)
    return out


def model_function(cfg, name="sparsek_model"):
    """func @name(tokens [B, T] i32, weights..., logits [B, T, vocab] f32) -> logits."""
    tok_t = ir.tensor([None, None], "i32")
    h_t = ir.tensor([None, None, cfg.C], _F32)
    logits_t = ir.tensor([None, None, cfg.vocab], _F32)
    args = [("tokens", tok_t)] + [(n, ir.tensor(s, _F32)) for n, s in cfg.weight_args()]
    args += [("logits", logits_t)]
    body = _Body()
    body.emit(f"%nb = tensor.dim %tokens, %c0 : {tok_t}")
    body.emit(f"%nt = tensor.dim %tokens, %c1 : {tok_t}")
    body.emit(f"%vmax = arith.constant {cfg.vocab - 1} : index")
    body.emit(f"%fC = arith.constant {float(cfg.C):.9e} : f32")
    body.emit(f"%eps = arith.constant {float(cfg.eps):.9e} : f32")
    h = _embed(body, cfg, "%tokens", tok_t, "%emb", h_t)
    att = cfg.attention()
    for i in range(cfg.layers):
        x = _rms_norm(body, cfg, h, h_t, f"%l{i}_norm1")
        a, _, _, _ = attention_body(body, att, x, h_t, {n: f"%l{i}_{n}" for n in att.weight_names()},
                                    ["%nb", "%nt"], _empty(body, h_t, ["%nb", "%nt"]))
        h = _add(body, h, a, h_t)
        x = _rms_norm(body, cfg, h, h_t, f"%l{i}_norm2")
        h = _add(body, h, _mlp(body, cfg, x, h_t, f"%l{i}_w1", f"%l{i}_w2"), h_t)
    x = _rms_norm(body, cfg, h, h_t, "%norm")
    logits, _ = _matmul(body, x, h_t, "%head", ir.tensor([cfg.C, cfg.vocab], _F32), cfg.vocab,
                        init="%logits")
    return _func(name, args, [(logits, logits_t)], body)


def model_module(cfg, name="sparsek_model"):
    return ir.module(model_function(cfg, name))


class CompiledModel:
    """The model compiled for the CPU (sparsek-cpu-pipeline, numpy arrays) or, with
    device="cuda", for the GPU (`pipeline` defaults to sparsek.gpu.default_pipeline(); torch
    CUDA tensors). `library` loads an already compiled library of model_module(cfg, name)
    instead of compiling one."""

    def __init__(self, cfg, name="sparsek_model", pipeline=None, device="cpu", library=None):
        from . import compiler

        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.cfg, self.name, self.device = cfg, name, device
        if device == "cuda":
            from . import gpu

            if library is None:
                library = gpu.compile(model_module(cfg, name), pipeline=pipeline)
            self.library = gpu.GPULibrary(library)
        else:
            from .cpu import CompiledLibrary

            if library is None:
                library = compiler.compile(model_module(cfg, name),
                                           pipeline=pipeline or "sparsek-cpu-pipeline")
            self.library = CompiledLibrary(library)
        if name not in self.library.manifest:
            raise ValueError(f"{library} has no function {name!r}")

    def weights(self, weights, device=None):
        """The weight arguments (weight_args() order) for the GPU: f32 contiguous CUDA tensors
        on `device` (default: torch's current one), from a tiny_transformer-style dict of
        arrays or tensors. Pass the list to calls to skip converting every time."""
        import torch

        device = torch.device("cuda" if device is None else device)
        out = []
        for (name, shape), a in zip(self.cfg.weight_args(), self.cfg.ordered(weights)):
            t = torch.as_tensor(a, dtype=torch.float32, device=device).contiguous()
            if tuple(t.shape) != tuple(shape):
                raise ValueError(f"weight {name}: expected shape {tuple(shape)}, got {tuple(t.shape)}")
            out.append(t)
        return out

    def __call__(self, tokens, weights):
        """tokens [B, T] (ints in [0, vocab)) -> logits [B, T, vocab] float32: numpy arrays on
        the CPU; on the GPU a CUDA tensor on the tokens' device (host tokens go to the current
        one), `weights` a dict or the list of `weights()`, called on torch's current stream."""
        if self.device == "cuda":
            return self._call_cuda(tokens, weights)
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens: expected a [B, T] integer array, got {tokens.dtype} of shape "
                             f"{tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.cfg.vocab):
            raise ValueError(f"tokens must lie in [0, {self.cfg.vocab}), got [{tokens.min()}, {tokens.max()}]")
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        logits = np.zeros(tokens.shape + (self.cfg.vocab,), np.float32)
        self.library.call(self.name, tokens, *self.cfg.flatten(weights), logits)
        return logits

    def _call_cuda(self, tokens, weights):
        import torch

        if not isinstance(tokens, torch.Tensor):
            tokens = torch.as_tensor(np.asarray(tokens))
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8,
                                                      torch.uint8):
            raise ValueError(f"tokens: expected a [B, T] integer tensor, got {tokens.dtype} of shape "
                             f"{tuple(tokens.shape)}")
        device = tokens.device if tokens.is_cuda else torch.device("cuda", torch.cuda.current_device())
        if tokens.numel():
            # The one read-back (two integers): the compiled code clamps, but a token out of
            # range is the caller's error, as on the CPU.
            lo, hi = torch.aminmax(tokens)
            lo, hi = int(lo), int(hi)
            if lo < 0 or hi >= self.cfg.vocab:
                raise ValueError(f"tokens must lie in [0, {self.cfg.vocab}), got [{lo}, {hi}]")
        tokens = tokens.to(device=device, dtype=torch.int32).contiguous()
        if isinstance(weights, dict):
            weights = self.weights(weights, device)
        with torch.cuda.device(device):
            logits = torch.empty(tuple(tokens.shape) + (self.cfg.vocab,), dtype=torch.float32,
                                 device=device)
            self.library.call(self.name, tokens, *weights, logits,
                              stream=torch.cuda.current_stream(device))
        return logits
