# MLIR of a whole SparseK attention layer (prefill and decode steps) from shapes and options, and its float64 reference.
"""A SparseK attention layer as MLIR, parameterized by shapes and options.

The layer (SPEC 7): q/k/v projections, the scoring network, selection +
sparse attention, the output projection. Weights are in the layout
`y = x @ W`:
  wq [C, Hq*D], wk [C, Hkv*D], wv [C, Hkv*D], wsc [Hkv, C],
  bias, slope [Hkv] (optional, f32), wo [Hq*D, C].
Batch B and sequence length T are dynamic. Three entry points:
  prefill      x [B, T, C] -> out [B, T, C]  (+ key, value [B, Hkv, T, D] and
               u [B, Hkv, T] with return_kv, to fill a KV cache);
  decode_qkv   x [B, C], pos [B] -> q [B, Hq, D], key, value [B, Hkv, D], u [B, Hkv]
               for the token at absolute position pos of each sequence;
  decode_attend q [B, Hq, D] + the runtime's slot arrays -> out [B, C].
Between the two decode steps the caller appends (key, value, u) to the KV
cache (sparsek.kv_cache). Projections accumulate in f32; with dtype f16 or
bf16 the activations, weights and K/V are stored in that type.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import ir

_F32 = "f32"


@dataclass(frozen=True)
class LayerConfig:
    C: int
    Hq: int
    Hkv: int
    D: int
    k: int
    w: int
    dtype: str = "f32"
    bias: bool = False
    slope: bool = False
    scale: Optional[float] = None

    def __post_init__(self):
        for name in ("C", "Hq", "Hkv", "D"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.Hq % self.Hkv:
            raise ValueError(f"Hq = {self.Hq} must be a multiple of Hkv = {self.Hkv}")
        if self.k < 0 or self.w < 0 or self.k + self.w == 0:
            raise ValueError(f"need k >= 0, w >= 0 and k + w >= 1, got k = {self.k}, w = {self.w}")
        if self.dtype not in ir.ELEMENT_TYPES:
            raise ValueError(f"dtype must be one of {ir.ELEMENT_TYPES}, got {self.dtype!r}")

    def weight_names(self):
        """Names of the weight arguments, in call order."""
        return (["wq", "wk", "wv", "wsc"] + (["bias"] if self.bias else [])
                + (["slope"] if self.slope else []) + ["wo"])

    def weight_shapes(self):
        C, Hq, Hkv, D = self.C, self.Hq, self.Hkv, self.D
        shapes = {"wq": (C, Hq * D), "wk": (C, Hkv * D), "wv": (C, Hkv * D), "wsc": (Hkv, C),
                  "bias": (Hkv,), "slope": (Hkv,), "wo": (Hq * D, C)}
        return {n: shapes[n] for n in self.weight_names()}

    def weight_dtype(self, name):
        """Element type of a weight: bias and slope are f32, the rest `dtype`."""
        return _F32 if name in ("bias", "slope") else self.dtype


def attention_config(embed_dim, num_heads, num_kv_heads=None, head_dim=None, k=64, w=64,
                     score_bias=True, score_slope=False, scale=None, dtype="f32"):
    """The LayerConfig of `sparsek.nn.SparseKAttention(...)` with these arguments
    (dtype as "f32", "f16" or "bf16"), without torch: what ahead-of-time
    builds (CompiledLayer(cfg).prebuild()) compile for a module."""
    num_kv_heads = num_kv_heads or num_heads
    head_dim = head_dim or embed_dim // num_heads
    return LayerConfig(C=embed_dim, Hq=num_heads, Hkv=num_kv_heads, D=head_dim, k=k, w=w, dtype=dtype,
                       bias=score_bias, slope=score_slope, scale=scale)


class _Body:
    """Accumulates the lines of one function body with fresh SSA names."""

    def __init__(self):
        self.lines = []
        self._n = 0

    def fresh(self, stem):
        self._n += 1
        return f"%{stem}{self._n}"

    def emit(self, line):
        self.lines.append("  " + line)

    def text(self):
        return "\n".join(self.lines)


def _map(ndims, exprs):
    dims = ", ".join(f"d{i}" for i in range(ndims))
    return f"affine_map<({dims}) -> ({', '.join(exprs)})>"


def _ext(body, value, elem):
    """`value` widened to f32 inside a linalg region."""
    if elem == _F32:
        return value
    wide = body.fresh("e")
    body.emit(f"  {wide} = arith.extf {value} : {elem} to f32")
    return wide


def _contract(body, lhs, rhs, out_t, out_map, reduced, elem, dyn, init=None):
    """f32 out = sum over the `reduced` loop dims of lhs * rhs; returns its SSA name.

    lhs and rhs are (value, type, indexing exprs) of `elem` operands; loop
    dims are d0..d{n-1} with n = len(out_map) + len(reduced). Accumulates
    into `init` (zeroed first) when given, else into a new tensor.
    """
    ndims = len(out_map) + len(reduced)
    if init is None:
        init = _empty(body, out_t, dyn)
    zero, acc = body.fresh("zero"), body.fresh("acc")
    body.emit(f"{zero} = linalg.fill ins(%f0 : f32) outs({init} : {out_t}) -> {out_t}")
    iters = ", ".join('"reduction"' if i in reduced else '"parallel"' for i in range(ndims))
    maps = ", ".join(_map(ndims, m) for m in (lhs[2], rhs[2], out_map))
    body.emit(f"{acc} = linalg.generic {{indexing_maps = [{maps}], iterator_types = [{iters}]}} "
              f"ins({lhs[0]}, {rhs[0]} : {lhs[1]}, {rhs[1]}) outs({zero} : {out_t}) {{")
    body.emit(f"^bb0(%a: {elem}, %b: {elem}, %s: f32):")
    a, b = _ext(body, "%a", elem), _ext(body, "%b", elem)
    body.emit(f"  %m = arith.mulf {a}, {b} : f32")
    body.emit("  %r = arith.addf %s, %m : f32")
    body.emit("  linalg.yield %r : f32")
    body.emit(f"}} -> {out_t}")
    return acc


def _store_rows(body, acc, acc_t, dest, dest_t, elem, rank, t_dim, col):
    """Writes the f32 rows of `acc` [B*T, N] (or [B, N]: t_dim None) into `dest`
    [.., rank dims] of `elem`: at loop point (d0 = b, .., d{t_dim} = t, ..) the
    element acc[b * T + t, c] with c = d{col[0]} * col[1] + d{col[2]} (col[0] None:
    c = d{col[2]}); T is %nt. A gather rather than an expand_shape of acc and a
    copy: expand_shape back to [B, T, ..] has two dynamic sizes in one group, which
    MLIR 22's expand-strided-metadata crashes on, and an identity copy of f32 folds
    away (the result would no longer be written into `dest`)."""
    out = body.fresh("rows")
    iters = ", ".join(['"parallel"'] * rank)
    body.emit(f"{out} = linalg.generic {{indexing_maps = [{_map(rank, [f'd{i}' for i in range(rank)])}], "
              f"iterator_types = [{iters}]}} outs({dest} : {dest_t}) {{")
    body.emit(f"^bb0(%dst: {elem}):")
    body.emit("  %ib = linalg.index 0 : index")
    row = "%ib"
    if t_dim is not None:
        body.emit(f"  %it = linalg.index {t_dim} : index")
        body.emit("  %bt = arith.muli %ib, %nt : index")
        body.emit("  %row = arith.addi %bt, %it : index")
        row = "%row"
    body.emit(f"  %ic = linalg.index {col[2]} : index")
    column = "%ic"
    if col[0] is not None:
        body.emit(f"  %ih = linalg.index {col[0]} : index")
        body.emit(f"  %width = arith.constant {col[1]} : index")
        body.emit("  %hD = arith.muli %ih, %width : index")
        body.emit("  %col = arith.addi %hD, %ic : index")
        column = "%col"
    body.emit(f"  %v = tensor.extract {acc}[{row}, {column}] : {acc_t}")
    if elem == _F32:
        body.emit("  linalg.yield %v : f32")
    else:
        body.emit(f"  %t = arith.truncf %v : f32 to {elem}")
        body.emit(f"  linalg.yield %t : {elem}")
    body.emit(f"}} -> {dest_t}")
    return out


def _empty(body, shape_t, dyn):
    name = body.fresh("init")
    body.emit(f"{name} = tensor.empty({', '.join(dyn)}) : {shape_t}")
    return name


def _rows(body, dyn):
    """The SSA name of the product of the dynamic sizes `dyn` (the rows of a
    matrix whose leading dims are collapsed)."""
    if len(dyn) == 1:
        return dyn[0]
    rows = body.fresh("rows")
    body.emit(f"{rows} = arith.muli {dyn[0]}, {dyn[1]} : index")
    return rows


def _matmul(body, a, a_t, w, w_t, rows, n):
    """f32 [rows, n] = a [rows, K] @ w [K, n] as one linalg.matmul (operands of
    one element type, f32 accumulation): the form sparsek-gpu-pipeline puts on
    tensor cores for bf16/f16. Returns (value, type)."""
    acc_t = ir.tensor([None, n], _F32)
    zero, acc = body.fresh("zero"), body.fresh("mm")
    body.emit(f"{zero} = linalg.fill ins(%f0 : f32) outs({_empty(body, acc_t, [rows])} : {acc_t}) "
              f"-> {acc_t}")
    body.emit(f"{acc} = linalg.matmul ins({a}, {w} : {a_t}, {w_t}) outs({zero} : {acc_t}) -> {acc_t}")
    return acc, acc_t


def _collapse(body, value, value_t, groups, out_t):
    name = body.fresh("flat")
    body.emit(f"{name} = tensor.collapse_shape {value} {groups} : {value_t} into {out_t}")
    return name


def _project(body, cfg, x, x_t, w, heads, lead, dyn, dest=None):
    """x [lead..., C] @ w [C, heads*D] -> [lead[0], heads, lead[1:]..., D] in cfg.dtype.

    lead has 2 dims (b, t) for prefill, 1 (b) for decode. One matmul over the
    collapsed (b[, t]) rows, then a transposing store.
    """
    C, D, E = cfg.C, cfg.D, cfg.dtype
    n = len(lead)
    rows = _rows(body, dyn)
    a, a_t = x, x_t
    if n == 2:
        a_t = ir.tensor([None, C], E)
        a = _collapse(body, x, x_t, "[[0, 1], [2]]", a_t)
    acc, acc_t = _matmul(body, a, a_t, w, ir.tensor([C, heads * D], E), rows, heads * D)
    out_t = ir.tensor([None, heads] + [None] * (n - 1) + [D], E)
    dest = dest or _empty(body, out_t, dyn)
    # Loops (b, h, [t,] d): row b [* T + t], column h * D + d.
    if n == 2:
        return _store_rows(body, acc, acc_t, dest, out_t, E, 4, 2, (1, D, 3))
    return _store_rows(body, acc, acc_t, dest, out_t, E, 3, None, (1, D, 2))


def _output_projection(body, cfg, o, o_t, wo, out, decode):
    """out [b, (t,) c] = sum_{h, d} o [b, h, (t,) d] * wo [h*D + d, c]: o's heads
    gathered into rows of Hq*D (a transposing copy for prefill), one matmul."""
    C, D, E, Hq = cfg.C, cfg.D, cfg.dtype, cfg.Hq
    dyn = ["%nb"] if decode else ["%nb", "%nt"]
    rows_t = ir.tensor([None, Hq * D], E)
    if decode:
        a = _collapse(body, o, o_t, "[[0], [1, 2]]", rows_t)
    else:
        bthd_t = ir.tensor([None, None, Hq, D], E)
        bthd = _copy(body, o, o_t, ["d0", "d2", "d1", "d3"], _empty(body, bthd_t, dyn), bthd_t, E, 4)
        a = _collapse(body, bthd, bthd_t, "[[0, 1], [2, 3]]", rows_t)
    acc, acc_t = _matmul(body, a, rows_t, wo, ir.tensor([Hq * D, C], E), _rows(body, dyn), C)
    out_t = ir.tensor([None] * len(dyn) + [C], E)
    if decode:
        return _store_rows(body, acc, acc_t, out, out_t, E, 2, None, (None, 1, 1))
    return _store_rows(body, acc, acc_t, out, out_t, E, 3, 1, (None, 1, 2))


def _copy(body, src, src_t, src_exprs, dest, dest_t, elem, rank):
    """dest (identity over the loops d0..d{rank-1}) = src at `src_exprs`, both `elem`."""
    out = body.fresh("copy")
    ident = [f"d{i}" for i in range(rank)]
    maps = f"{_map(rank, src_exprs)}, {_map(rank, ident)}"
    iters = ", ".join(['"parallel"'] * rank)
    body.emit(f"{out} = linalg.generic {{indexing_maps = [{maps}], iterator_types = [{iters}]}} "
              f"ins({src} : {src_t}) outs({dest} : {dest_t}) {{")
    body.emit(f"^bb0(%a: {elem}, %dst: {elem}):")
    body.emit(f"  linalg.yield %a : {elem}")
    body.emit(f"}} -> {dest_t}")
    return out


def _weight_args(cfg):
    return [(n, ir.tensor(s, cfg.weight_dtype(n))) for n, s in cfg.weight_shapes().items()]


def _func(name, args, results, body):
    sig = ", ".join(f"%{n}: {t}" for n, t in args)
    res_t = ", ".join(t for _, t in results)
    ret = ", ".join(v for v, _ in results)
    return (f"func.func @{name}({sig}) -> ({res_t}) {{\n"
            "  %c0 = arith.constant 0 : index\n  %c1 = arith.constant 1 : index\n"
            "  %f0 = arith.constant 0.0 : f32\n"
            f"{body.text()}\n  return {ret} : {res_t}\n}}\n")


def attention_body(body, cfg, x, x_t, weights, dyn, out, kv_dests=None):
    """Emits the layer over `x` (of type x_t, [B, T, C]) into `out`; returns the
    SSA names (out, key, value, u). `weights` maps the weight names of cfg to SSA
    names; with kv_dests (key, value, u destinations) K, V and u are written there."""
    E, Hq, Hkv = cfg.dtype, cfg.Hq, cfg.Hkv
    q_t, kv_t = ir.tensor([None, Hq, None, cfg.D], E), ir.tensor([None, Hkv, None, cfg.D], E)
    u_t = ir.tensor([None, Hkv, None], _F32)
    key_dest, value_dest, u_dest = kv_dests or (None, None, None)
    q = _project(body, cfg, x, x_t, weights["wq"], Hq, ["b", "t"], dyn)
    key = _project(body, cfg, x, x_t, weights["wk"], Hkv, ["b", "t"], dyn, dest=key_dest)
    value = _project(body, cfg, x, x_t, weights["wv"], Hkv, ["b", "t"], dyn, dest=value_dest)
    u0 = u_dest or _empty(body, u_t, dyn)
    extra = (f" bias({weights['bias']} : {ir.tensor([Hkv], _F32)})" if cfg.bias else "") + \
            (f" slope({weights['slope']} : {ir.tensor([Hkv], _F32)})" if cfg.slope else "")
    u = body.fresh("u")
    body.emit(f"{u} = sparsek.score ins({x}, {weights['wsc']} : {x_t}, {ir.tensor([Hkv, cfg.C], E)}){extra} "
              f"outs({u0} : {u_t}) -> {u_t}")
    o0, o = _empty(body, q_t, dyn), body.fresh("o")
    scale = "" if cfg.scale is None else f" scale = {float(cfg.scale)!r}"
    body.emit(f"{o} = sparsek.select_attention ins({q}, {key}, {value}, {u} : {q_t}, {kv_t}, {kv_t}, {u_t}) "
              f"k = {cfg.k} w = {cfg.w}{scale} outs({o0} : {q_t}) -> {q_t}")
    return _output_projection(body, cfg, o, q_t, weights["wo"], out, decode=False), key, value, u


def prefill_function(name, cfg, return_kv=False):
    """The whole layer over x [B, T, C] (positions 0..T-1) into out [B, T, C]."""
    E, Hkv, D = cfg.dtype, cfg.Hkv, cfg.D
    x_t = ir.tensor([None, None, cfg.C], E)
    kv_t = ir.tensor([None, Hkv, None, D], E)
    u_t = ir.tensor([None, Hkv, None], _F32)
    args = [("x", x_t)] + _weight_args(cfg) + [("out", x_t)]
    if return_kv:
        args += [("key_out", kv_t), ("value_out", kv_t), ("u_out", u_t)]
    body = _Body()
    body.emit(f"%nb = tensor.dim %x, %c0 : {x_t}")
    body.emit(f"%nt = tensor.dim %x, %c1 : {x_t}")
    out, key, value, u = attention_body(
        body, cfg, "%x", x_t, {n: f"%{n}" for n in cfg.weight_names()}, ["%nb", "%nt"], "%out",
        kv_dests=("%key_out", "%value_out", "%u_out") if return_kv else None)
    results = [(out, x_t)]
    if return_kv:
        results += [(key, kv_t), (value, kv_t), (u, u_t)]
    return _func(name, args, results, body)


def kv_function(name, cfg):
    """key, value [B, Hkv, T, D] and u [B, Hkv, T] of x [B, T, C] at positions offset + 0..T-1
    (a slice of a longer sequence: context-parallel prefill)."""
    E, Hkv, D = cfg.dtype, cfg.Hkv, cfg.D
    x_t, kv_t, u_t = ir.tensor([None, None, cfg.C], E), ir.tensor([None, Hkv, None, D], E), \
        ir.tensor([None, Hkv, None], _F32)
    args = ([("x", x_t), ("offset", "index")] + [a for a in _weight_args(cfg) if a[0] not in ("wq", "wo")]
            + [("key_out", kv_t), ("value_out", kv_t), ("u_out", u_t)])
    body = _Body()
    body.emit(f"%nb = tensor.dim %x, %c0 : {x_t}")
    body.emit(f"%nt = tensor.dim %x, %c1 : {x_t}")
    dyn = ["%nb", "%nt"]
    key = _project(body, cfg, "%x", x_t, "%wk", Hkv, ["b", "t"], dyn, dest="%key_out")
    value = _project(body, cfg, "%x", x_t, "%wv", Hkv, ["b", "t"], dyn, dest="%value_out")
    extra = (f" bias(%bias : {ir.tensor([Hkv], _F32)})" if cfg.bias else "") + \
            (f" slope(%slope : {ir.tensor([Hkv], _F32)})" if cfg.slope else "")
    body.emit(f"%u = sparsek.score ins(%x, %wsc : {x_t}, {ir.tensor([Hkv, cfg.C], E)}){extra} offset(%offset) "
              f"outs(%u_out : {u_t}) -> {u_t}")
    return _func(name, args, [(key, kv_t), (value, kv_t), ("%u", u_t)], body)


def attend_prefix_function(name, cfg):
    """out [B, T, C] for the last T positions of a sequence whose key, value [B, Hkv, S, D] and
    u [B, Hkv, S] (S >= T) are given: x [B, T, C] holds those T tokens (SPEC 5: queries aligned
    to the lower right). Keys that the queries neither select nor see in their windows are
    never read, so they may be left unset."""
    E, Hq, Hkv, D = cfg.dtype, cfg.Hq, cfg.Hkv, cfg.D
    x_t, q_t = ir.tensor([None, None, cfg.C], E), ir.tensor([None, Hq, None, D], E)
    kv_t, u_t = ir.tensor([None, Hkv, None, D], E), ir.tensor([None, Hkv, None], _F32)
    args = [("x", x_t), ("key", kv_t), ("value", kv_t), ("u", u_t), ("wq", ir.tensor([cfg.C, Hq * D], E)),
            ("wo", ir.tensor([Hq * D, cfg.C], E)), ("out", x_t)]
    body = _Body()
    body.emit(f"%nb = tensor.dim %x, %c0 : {x_t}")
    body.emit(f"%nt = tensor.dim %x, %c1 : {x_t}")
    dyn = ["%nb", "%nt"]
    q = _project(body, cfg, "%x", x_t, "%wq", Hq, ["b", "t"], dyn)
    o0 = _empty(body, q_t, dyn)
    scale = "" if cfg.scale is None else f" scale = {float(cfg.scale)!r}"
    body.emit(f"%o = sparsek.select_attention ins({q}, %key, %value, %u : {q_t}, {kv_t}, {kv_t}, {u_t}) "
              f"k = {cfg.k} w = {cfg.w}{scale} outs({o0} : {q_t}) -> {q_t}")
    out = _output_projection(body, cfg, "%o", q_t, "%wo", "%out", decode=False)
    return _func(name, args, [(out, x_t)], body)


def context_parallel_module(cfg):
    """`cp_kv` (kv_function) and `cp_attend` (attend_prefix_function): what
    sparsek.parallel.context_parallel_prefill runs on each rank."""
    return ir.module(kv_function("cp_kv", cfg), attend_prefix_function("cp_attend", cfg))


def decode_qkv_function(name, cfg):
    """q, key, value, u of one new token per sequence: x [B, C] at positions pos [B]."""
    E, Hq, Hkv, D = cfg.dtype, cfg.Hq, cfg.Hkv, cfg.D
    x_t, pos_t = ir.tensor([None, cfg.C], E), ir.tensor([None], "i64")
    q_t, kv_t, u_t = ir.tensor([None, Hq, D], E), ir.tensor([None, Hkv, D], E), ir.tensor([None, Hkv], _F32)
    args = ([("x", x_t), ("pos", pos_t)] + [a for a in _weight_args(cfg) if a[0] != "wo"]
            + [("q_out", q_t), ("key_out", kv_t), ("value_out", kv_t), ("u_out", u_t)])
    body = _Body()
    body.emit(f"%nb = tensor.dim %x, %c0 : {x_t}")
    dyn = ["%nb"]
    q = _project(body, cfg, "%x", x_t, "%wq", Hq, ["b"], dyn, dest="%q_out")
    key = _project(body, cfg, "%x", x_t, "%wk", Hkv, ["b"], dyn, dest="%key_out")
    value = _project(body, cfg, "%x", x_t, "%wv", Hkv, ["b"], dyn, dest="%value_out")
    # u[b, h] = x[b] . wsc[h] (+ bias[h]) (+ slope[h] * pos[b]): SPEC 2 at the
    # token's absolute position, which differs per sequence.
    ins = [("%x", x_t, ["d0", "d2"]), ("%wsc", ir.tensor([Hkv, cfg.C], E), ["d1", "d2"])]
    if cfg.bias:
        ins.append(("%bias", ir.tensor([Hkv], _F32), ["d1"]))
    if cfg.slope:
        ins += [("%slope", ir.tensor([Hkv], _F32), ["d1"]), ("%pos", pos_t, ["d0"])]
    zero = body.fresh("zero")
    body.emit(f"{zero} = linalg.fill ins(%f0 : f32) outs(%u_out : {u_t}) -> {u_t}")
    maps = ", ".join(_map(3, m) for _, _, m in ins) + ", " + _map(3, ["d0", "d1"])
    body.emit(f"%u = linalg.generic {{indexing_maps = [{maps}], iterator_types = "
              f"[\"parallel\", \"parallel\", \"reduction\"]}} ins({', '.join(v for v, _, _ in ins)} : "
              f"{', '.join(t for _, t, _ in ins)}) outs({zero} : {u_t}) {{")
    block = ["%a: " + E, "%w: " + E] + (["%bi: f32"] if cfg.bias else []) + \
            (["%sl: f32", "%p: i64"] if cfg.slope else []) + ["%s: f32"]
    body.emit(f"^bb0({', '.join(block)}):")
    a, w = _ext(body, "%a", E), _ext(body, "%w", E)
    body.emit(f"  %m = arith.mulf {a}, {w} : f32")
    body.emit("  %r = arith.addf %s, %m : f32")
    # Bias and slope are added once per (b, h): on the first reduction step.
    last = "%r"
    if cfg.bias or cfg.slope:
        body.emit("  %ci = linalg.index 2 : index")
        body.emit("  %first = arith.cmpi eq, %ci, %c0 : index")
        extra = "%f0"
        if cfg.bias:
            body.emit(f"  %eb = arith.addf {extra}, %bi : f32")
            extra = "%eb"
        if cfg.slope:
            body.emit("  %pf = arith.sitofp %p : i64 to f32")
            body.emit("  %sp = arith.mulf %sl, %pf : f32")
            body.emit(f"  %es = arith.addf {extra}, %sp : f32")
            extra = "%es"
        body.emit(f"  %plus = arith.addf %r, {extra} : f32")
        body.emit("  %rr = arith.select %first, %plus, %r : f32")
        last = "%rr"
    body.emit(f"  linalg.yield {last} : f32")
    body.emit(f"}} -> {u_t}")
    return _func(name, args, [(q, q_t), (key, kv_t), (value, kv_t), ("%u", u_t)], body)


def decode_attend_function(name, cfg):
    """out [B, C] from q [B, Hq, D] and the runtime's slot arrays of those B sequences."""
    E, Hq, Hkv, D, N = cfg.dtype, cfg.Hq, cfg.Hkv, cfg.D, cfg.k + cfg.w
    q_t, kv_t = ir.tensor([None, Hq, D], E), ir.tensor([None, Hkv, N, D], E)
    sc_t, tau_t = ir.tensor([None, Hkv, N], _F32), ir.tensor([None, Hkv], _F32)
    cnt_t, pos_t, out_t = ir.tensor([None, Hkv], "i32"), ir.tensor([None], "i64"), ir.tensor([None, cfg.C], E)
    args = [("q", q_t), ("kc", kv_t), ("vc", kv_t), ("sc", sc_t), ("tau", tau_t), ("cnt", cnt_t),
            ("pos", pos_t), ("wo", ir.tensor([Hq * D, cfg.C], E)), ("out", out_t)]
    body = _Body()
    body.emit(f"%nb = tensor.dim %q, %c0 : {q_t}")
    o0 = _empty(body, q_t, ["%nb"])
    scale = "" if cfg.scale is None else f" scale = {float(cfg.scale)!r}"
    body.emit(f"%o = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : "
              f"{q_t}, {kv_t}, {kv_t}, {sc_t}, {tau_t}, {cnt_t}, {pos_t}) k = {cfg.k} w = {cfg.w}{scale} "
              f"outs({o0} : {q_t}) -> {q_t}")
    out = _output_projection(body, cfg, "%o", q_t, "%wo", "%out", decode=True)
    return _func(name, args, [(out, out_t)], body)


def layer_module(cfg, name="sparsek_layer", return_kv=False, decode=True):
    """A module with `<name>_prefill` and, with decode, `<name>_decode_qkv` / `_decode_attend`."""
    funcs = [prefill_function(f"{name}_prefill", cfg, return_kv=return_kv)]
    if decode:
        funcs += [decode_qkv_function(f"{name}_decode_qkv", cfg),
                  decode_attend_function(f"{name}_decode_attend", cfg)]
    return ir.module(*funcs)


# ----------------------------------------------------------------------------
# float64 reference of the same layer (numpy only).
# ----------------------------------------------------------------------------


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def reference_prefill(cfg, x, weights):
    """out, key, value, u of the layer in float64; `weights` maps names to arrays."""
    from . import reference

    x = _f64(x)
    B, T, C = x.shape
    Hq, Hkv, D = cfg.Hq, cfg.Hkv, cfg.D
    q = np.einsum("btc,chd->bhtd", x, _f64(weights["wq"]).reshape(C, Hq, D))
    key = np.einsum("btc,chd->bhtd", x, _f64(weights["wk"]).reshape(C, Hkv, D))
    value = np.einsum("btc,chd->bhtd", x, _f64(weights["wv"]).reshape(C, Hkv, D))
    u = reference.score(x, weights["wsc"], weights.get("bias") if cfg.bias else None,
                        weights.get("slope") if cfg.slope else None)
    o = reference.sparsek_attention(q, key, value, u, cfg.k, cfg.w, scale=cfg.scale)
    out = np.einsum("bhtd,hdc->btc", o, _f64(weights["wo"]).reshape(Hq, D, C))
    return out, key, value, u
