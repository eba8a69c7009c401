# Variable-length batches: select_attention (and a whole layer) over packed sequences with cumulative offsets (FlashAttention's varlen layout), one compiled call on the CPU or the GPU.
"""select_attention over a batch of sequences of different lengths.

    out = varlen.select_attention(q, key, value, u, cu_seqlens_q, cu_seqlens_k, k=16, w=16)

The layout is FlashAttention's varlen one: the tokens of all sequences are
concatenated, q [total_q, Hq, D], key [total_k, Hkv, D], value [total_k, Hkv,
Dv], u [total_k, Hkv] (float32 scores), and sequence b owns the rows
cu_seqlens_q[b]:cu_seqlens_q[b+1] of q and cu_seqlens_k[b]:cu_seqlens_k[b+1]
of key, value and u (int32 offsets, nondecreasing from 0 to the totals). Its
T_b queries are the last T_b of its S_b key positions (T_b <= S_b; a prefix
already cached when S_b > T_b), exactly as sparsek.select_attention on that
sequence alone: out [total_q, Hq, Dv] holds each sequence's result in its
rows. Sequences of length 0 are allowed.

`varlen_function` builds the MLIR: one function whose scf.for walks the
sequences, slicing each one's rows by its offsets into the op's [1, H, T, D]
layout and writing its output rows back, so the batch is one call of one
compiled entry point. Offsets that are out of range or decreasing skip the
sequence inside the compiled code (no out-of-bounds access); the Python entry
point refuses them with a message before calling.

On torch CUDA tensors the batch runs `padded_function` instead: the op once
over a padded batch, so its kernels launch once for all sequences (see "One
launch for the batch" below). `Layer` is a whole SparseK layer over packed
prompts (projections, scores, this attention, output projection) in one
entry point, whose packed key, value and u fill a KV cache in one call
(KVCache.append_varlen); SparseKAttention.prefill(..., cu_seqlens=...) runs it
(through torch.ops.sparsek.prefill_varlen, so that torch.compile traces it).
"""

import numpy as np

from . import compiler
from .cpu import CompiledLibrary
from .gpu import GPULibrary, compile as compile_gpu
from .ir import _check_elem, _func, _scale, tensor
from .kv_cache import NUMPY_DTYPES
from .memref import to_bf16_bits

_LIBS = {}
_GPU_LIBS = {}


def _heads(name, x, t, h, d, elem):
    """MLIR lines turning %x [t, h, d] (token-major rows) into %name [1, h, t, d] (the op's layout)."""
    rows, heads = tensor([None] * 3, elem), tensor([1, None, None, None], elem)
    return (f"      %{name}_e = tensor.empty(%{h}, %{t}, %{d}) : {rows}\n"
            f"      %{name}_t = linalg.transpose ins(%{x} : {rows}) outs(%{name}_e : {rows}) "
            f"permutation = [1, 0, 2]\n"
            f"      %{name} = tensor.expand_shape %{name}_t [[0, 1], [2], [3]] "
            f"output_shape [1, %{h}, %{t}, %{d}] : {rows} into {heads}\n")


def _offset(name, cu, i, cu_type):
    """MLIR lines reading the offset %cu[%i] as the index %name."""
    return (f"    %{name}_i32 = tensor.extract %{cu}[%{i}] : {cu_type}\n"
            f"    %{name} = arith.index_cast %{name}_i32 : i32 to index\n")


def varlen_function(name, k, w, elem="f32", scale=None):
    """o [total_q, Hq, Dv] = select_attention over packed sequences (see the module docstring)."""
    _check_elem(elem)
    q, u, cu = tensor([None] * 3, elem), tensor([None] * 2, "f32"), tensor([None], "i32")
    q4, u3 = tensor([1, None, None, None], elem), tensor([1, None, None], "f32")
    body = f"""  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %n = tensor.dim %cuq, %c0 : {cu}
  %nk = tensor.dim %cuk, %c0 : {cu}
  %nb = arith.minsi %n, %nk : index
  %nseq = arith.subi %nb, %c1 : index
  %tq = tensor.dim %q, %c0 : {q}
  %tk = tensor.dim %k, %c0 : {q}
  %hq = tensor.dim %q, %c1 : {q}
  %d = tensor.dim %q, %c2 : {q}
  %hkv = tensor.dim %k, %c1 : {q}
  %dv = tensor.dim %v, %c2 : {q}
  %r = scf.for %b = %c0 to %nseq step %c1 iter_args(%o = %o0) -> ({q}) {{
    %b1 = arith.addi %b, %c1 : index
{_offset("q0", "cuq", "b", cu)}{_offset("q1", "cuq", "b1", cu)}{_offset("k0", "cuk", "b", cu)}{_offset("k1", "cuk", "b1", cu)}    %t = arith.subi %q1, %q0 : index
    %s = arith.subi %k1, %k0 : index
    // Only 0 <= q0 < q1 <= total_q and 0 <= k0 <= k1 <= total_k is sliced.
    %v0 = arith.cmpi sge, %q0, %c0 : index
    %v1 = arith.cmpi slt, %q0, %q1 : index
    %v2 = arith.cmpi sle, %q1, %tq : index
    %v3 = arith.cmpi sge, %k0, %c0 : index
    %v4 = arith.cmpi sle, %k0, %k1 : index
    %v5 = arith.cmpi sle, %k1, %tk : index
    %a0 = arith.andi %v0, %v1 : i1
    %a1 = arith.andi %a0, %v2 : i1
    %a2 = arith.andi %a1, %v3 : i1
    %a3 = arith.andi %a2, %v4 : i1
    %ok = arith.andi %a3, %v5 : i1
    %next = scf.if %ok -> ({q}) {{
      %qs = tensor.extract_slice %q[%q0, 0, 0] [%t, %hq, %d] [1, 1, 1] : {q} to {q}
      %ks = tensor.extract_slice %k[%k0, 0, 0] [%s, %hkv, %d] [1, 1, 1] : {q} to {q}
      %vs = tensor.extract_slice %v[%k0, 0, 0] [%s, %hkv, %dv] [1, 1, 1] : {q} to {q}
      %us = tensor.extract_slice %u[%k0, 0] [%s, %hkv] [1, 1] : {u} to {u}
{_heads("qh", "qs", "t", "hq", "d", elem)}{_heads("kh", "ks", "s", "hkv", "d", elem)}{_heads("vh", "vs", "s", "hkv", "dv", elem)}      %ut0 = tensor.empty(%hkv, %s) : {u}
      %ut = linalg.transpose ins(%us : {u}) outs(%ut0 : {u}) permutation = [1, 0]
      %uh = tensor.expand_shape %ut [[0, 1], [2]] output_shape [1, %hkv, %s] : {u} into {u3}
      %oe = tensor.empty(%hq, %t, %dv) : {q4}
      %oh = sparsek.select_attention ins(%qh, %kh, %vh, %uh : {q4}, {q4}, {q4}, {u3}) k = {k} w = {w}{_scale(scale)} outs(%oe : {q4}) -> {q4}
      %oc = tensor.collapse_shape %oh [[0, 1], [2], [3]] : {q4} into {q}
      %os = tensor.extract_slice %o[%q0, 0, 0] [%t, %hq, %dv] [1, 1, 1] : {q} to {q}
      %ot = linalg.transpose ins(%oc : {q}) outs(%os : {q}) permutation = [1, 0, 2]
      %o2 = tensor.insert_slice %ot into %o[%q0, 0, 0] [%t, %hq, %dv] [1, 1, 1] : {q} into {q}
      scf.yield %o2 : {q}
    }} else {{
      scf.yield %o : {q}
    }}
    scf.yield %next : {q}
  }}
  return %r : {q}"""
    args = [("q", q), ("k", q), ("v", q), ("u", u), ("cuq", cu), ("cuk", cu), ("o0", q)]
    return _func(name, args, [q], body)


# -- One launch for the batch (the GPU form) ----------------------------------
#
# The loop above runs the op once per sequence: on the GPU that is a launch
# (and a selection) per sequence. `padded_function` instead lays the batch out
# as one uniform select_attention over [B, H, T', D] and [B, H, S', D]
# (gathered from the packed rows in one kernel per operand), runs the op once
# (its kernels once: the tile-first wgmma or mma.sync kernel for bf16/f16, D
# in {64, 128}) and gathers each sequence's rows back. Exact because of where each
# sequence goes (`alignment`):
# - keys after a sequence's own (right padding) are never seen by its
#   queries (causality);
# - keys before them (left padding) get the score -inf, so they are never
#   candidates (SPEC 4), and are outside every query's window once the
#   sequence's first query has w - 1 keys before it (S_b - T_b >= w - 1).
# A sequence whose keys end at row S' - 1 (right-aligned) puts its queries in
# the last T_b of the T' rows; one with fewer cached keys starts at row 0
# (left-aligned). T' is the fewest rows that hold every sequence's queries.

def alignment(cu_seqlens_q, cu_seqlens_k, w):
    """(T', S') of the padded batch for host offsets (0, 0 when no sequence has a query).
    S' = max S_b; a sequence is right-aligned (its keys in rows [S' - S_b, S')) when
    S_b = S' or S_b - T_b >= w - 1, else left-aligned (rows [0, S_b)); query j of
    sequence b sits in row P_b + S_b - T_b + j - (S' - T')."""
    lq, lk = np.diff(np.asarray(cu_seqlens_q, np.int64)), np.diff(np.asarray(cu_seqlens_k, np.int64))
    busy = lq > 0
    if not busy.any():
        return 0, 0
    sp = int(lk.max())
    left = busy & (lk < sp) & (lk - lq < w - 1)
    # Right-aligned queries need T' >= T_b; left-aligned ones S' - T' <= S_b - T_b.
    tp = int(lq.max())
    if left.any():
        tp = max(tp, sp - int((lk - lq)[left].min()))
    return tp, sp


def _sequence(p, b):
    """MLIR lines (names prefixed `p`) reading sequence %b's geometry in the padded batch:
    %{p}q0, %{p}k0 (first packed rows), %{p}t, %{p}s (T_b, S_b), %{p}pk (first key row P_b),
    %{p}i0 (first query row) and %{p}ok (i1: offsets in range and the sequence fits (T', S'))."""
    cu = tensor([None], "i32")
    lines = f"""    %{p}b1 = arith.addi %{b}, %c1 : index
    %{p}q0i = tensor.extract %cuq[%{b}] : {cu}
    %{p}q1i = tensor.extract %cuq[%{p}b1] : {cu}
    %{p}k0i = tensor.extract %cuk[%{b}] : {cu}
    %{p}k1i = tensor.extract %cuk[%{p}b1] : {cu}
    %{p}q0 = arith.index_cast %{p}q0i : i32 to index
    %{p}q1 = arith.index_cast %{p}q1i : i32 to index
    %{p}k0 = arith.index_cast %{p}k0i : i32 to index
    %{p}k1 = arith.index_cast %{p}k1i : i32 to index
    %{p}t = arith.subi %{p}q1, %{p}q0 : index
    %{p}s = arith.subi %{p}k1, %{p}k0 : index
    %{p}cached = arith.subi %{p}s, %{p}t : index
    %{p}full = arith.cmpi eq, %{p}s, %sp : index
    %{p}far = arith.cmpi sge, %{p}cached, %wm1 : index
    %{p}right = arith.ori %{p}full, %{p}far : i1
    %{p}rp = arith.subi %sp, %{p}s : index
    %{p}pk = arith.select %{p}right, %{p}rp, %c0 : index
    %{p}pq = arith.addi %{p}pk, %{p}cached : index
    %{p}i0 = arith.subi %{p}pq, %shift : index
    %{p}iend = arith.addi %{p}i0, %{p}t : index
"""
    # 0 <= q0 <= q1 <= total_q, 0 <= k0 <= k1 <= total_k (the fewest rows of key, value
    # and u), T_b <= S_b <= S', 0 <= i0, i0 + T_b <= T'.
    tests = [("sge", "q0", "c0"), ("sle", "q0", "q1"), ("sle", "q1", "tq"), ("sge", "k0", "c0"),
             ("sle", "k0", "k1"), ("sle", "k1", "tk"), ("sle", "t", "s"), ("sle", "s", "sp"),
             ("sge", "i0", "c0"), ("sle", "iend", "tp")]
    local = {"q0", "q1", "k0", "k1", "t", "s", "i0", "iend"}
    for i, (pred, x, y) in enumerate(tests):
        x, y = (f"%{p}{v}" if v in local else f"%{v}" for v in (x, y))
        lines += f"    %{p}v{i} = arith.cmpi {pred}, {x}, {y} : index\n"
    acc = f"%{p}v0"
    for i in range(1, len(tests)):
        out = f"%{p}ok" if i == len(tests) - 1 else f"%{p}a{i}"
        lines += f"    {out} = arith.andi {acc}, %{p}v{i} : i1\n"
        acc = out
    return lines


def _clamp(name, x, size):
    """MLIR lines: %name = %x clamped to [0, %size - 1] (callers make sure %size >= 1)."""
    return (f"    %{name}_m = arith.subi %{size}, %c1 : index\n"
            f"    %{name}_lo = arith.maxsi %{x}, %c0 : index\n"
            f"    %{name} = arith.minsi %{name}_lo, %{name}_m : index\n")


def _select(name, cond, x, y, elem, indent):
    """MLIR lines: %name = %cond ? %x : %y. 16-bit floats are selected as i16 bit patterns:
    a bf16 select makes the x86 backend round through f32 with __truncsfbf2, which GCC
    12's libgcc lacks (on the GPU the casts are free)."""
    if elem == "f32":
        return f"{indent}%{name} = arith.select %{cond}, %{x}, %{y} : {elem}\n"
    return (f"{indent}%{name}_xi = arith.bitcast %{x} : {elem} to i16\n"
            f"{indent}%{name}_yi = arith.bitcast %{y} : {elem} to i16\n"
            f"{indent}%{name}_i = arith.select %{cond}, %{name}_xi, %{name}_yi : i16\n"
            f"{indent}%{name} = arith.bitcast %{name}_i : i16 to {elem}\n")


def _gather(name, src, src_t, dst_t, rows, first_row, pad, elem, width):
    """%name [B, H, rows(, W)] (H, W: src's) = src's packed rows of each sequence placed from
    row %{first_row} (a name of _sequence's lines), `pad` elsewhere: one kernel. Every
    load is in bounds (clamped; the padded extents are 0 when src has no rows), and the
    value is chosen by a select: no branch carries a 16-bit float, whose phi the x86
    backend would lower through __truncsfbf2 (missing from GCC 12's libgcc)."""
    rank = 4 if width else 3
    dims = ", ".join(f"d{i}" for i in range(rank))
    iters = ", ".join(['"parallel"'] * rank)
    sizes = ["%nb", f"%{name}_hs", f"%{rows}"] + ([f"%{name}_ws"] if width == "?" else [])
    col = ", %col" if width else ""
    count, start = ("t", "q0") if first_row == "i0" else ("s", "k0")
    src_rows = "tq" if first_row == "i0" else "tk"
    return f"""  %{name}_hs = tensor.dim %{src}, %c1 : {src_t}
{f"  %{name}_ws = tensor.dim %{src}, %c2 : {src_t}" + chr(10) if width == "?" else ""}  %{name}_e = tensor.empty({", ".join(sizes)}) : {dst_t}
  %{name} = linalg.generic {{indexing_maps = [affine_map<({dims}) -> ({dims})>], iterator_types = [{iters}]}} outs(%{name}_e : {dst_t}) {{
  ^bb0(%{name}_x: {elem}):
    %{name}_b = linalg.index 0 : index
    %{name}_h = linalg.index 1 : index
    %{name}_i = linalg.index 2 : index
{"    %col = linalg.index 3 : index" + chr(10) if width else ""}{_sequence(name + "_", name + "_b")}    %{name}_r = arith.subi %{name}_i, %{name}_{first_row} : index
    %{name}_in0 = arith.cmpi sge, %{name}_r, %c0 : index
    %{name}_in1 = arith.cmpi slt, %{name}_r, %{name}_{count} : index
    %{name}_in2 = arith.andi %{name}_in0, %{name}_in1 : i1
    %{name}_in = arith.andi %{name}_in2, %{name}_ok : i1
    %{name}_row0 = arith.addi %{name}_{start}, %{name}_r : index
{_clamp(name + "_row", name + "_row0", src_rows)}    %{name}_y0 = tensor.extract %{src}[%{name}_row, %{name}_h{col}] : {src_t}
{_select(name + "_y", name + "_in", name + "_y0", pad, elem, "    ")}    linalg.yield %{name}_y : {elem}
  }} -> {dst_t}
"""


def padded_function(name, k, w, elem="f32", scale=None, head_dim=None, value_dim=None):
    """The contract of `varlen_function` plus two index operands, T' and S' of `alignment`
    (the caller's host offsets give them): the batch as one select_attention over a padded
    [B, H, T', D] layout (see above). A sequence whose offsets are out of range or that
    does not fit (T', S') is skipped (its rows keep their contents); sizes that disagree
    (heads, head dims, the output's) are reported by the op (SPARSEK_ERROR_SHAPE_MISMATCH).
    Static head dims (`head_dim`, `value_dim`) let the GPU pipeline take its tile-first
    kernels."""
    _check_elem(elem)
    q, kk = tensor([None, None, head_dim], elem), tensor([None, None, head_dim], elem)
    v = tensor([None, None, value_dim], elem)
    u, cu = tensor([None] * 2, "f32"), tensor([None], "i32")
    q4, k4 = tensor([None, None, None, head_dim], elem), tensor([None, None, None, head_dim], elem)
    v4, u3 = tensor([None, None, None, value_dim], elem), tensor([None] * 3, "f32")
    dyn_d, dyn_dv = "?" if head_dim is None else "s", "?" if value_dim is None else "s"
    body = f"""  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %zero = arith.constant 0.0 : {elem}
  %ninf = arith.constant 0xFF800000 : f32
  %wm1 = arith.constant {w - 1} : index
  %n = tensor.dim %cuq, %c0 : {cu}
  %nk = tensor.dim %cuk, %c0 : {cu}
  %nb1 = arith.minsi %n, %nk : index
  %nb0 = arith.subi %nb1, %c1 : index
  %nb = arith.maxsi %nb0, %c0 : index
  %tq = tensor.dim %q, %c0 : {q}
  %tk0 = tensor.dim %k, %c0 : {kk}
  %tv = tensor.dim %v, %c0 : {v}
  %tu = tensor.dim %u, %c0 : {u}
  %tk1 = arith.minsi %tk0, %tv : index
  %tk = arith.minsi %tk1, %tu : index
  // No rows to read: no padded rows (T', S' taken as 0), so every load is in bounds.
  // Negative sizes count as 0; T' > S' would be refused by the op: T' is cut to
  // S' (what does not fit is skipped).
  %noq = arith.cmpi eq, %tq, %c0 : index
  %nok = arith.cmpi eq, %tk, %c0 : index
  %none = arith.ori %noq, %nok : i1
  %tpn = arith.maxsi %tp0, %c0 : index
  %spn = arith.maxsi %sp0, %c0 : index
  %tpfit = arith.minsi %tpn, %spn : index
  %tp = arith.select %none, %c0, %tpfit : index
  %sp = arith.select %nok, %c0, %spn : index
  %shift = arith.subi %sp, %tp : index
{_gather("qp", "q", q, q4, "tp", "i0", "zero", elem, dyn_d)}{_gather("kp", "k", kk, k4, "sp", "pk", "zero", elem, dyn_d)}{_gather("vp", "v", v, v4, "sp", "pk", "zero", elem, dyn_dv)}{_gather("up", "u", u, u3, "sp", "pk", "ninf", "f32", None)}  // The output's own sizes: the op reports any disagreement with q's and value's.
  %hq = tensor.dim %o0, %c1 : {v}
{"  %dv = tensor.dim %o0, %c2 : " + v + chr(10) if value_dim is None else ""}  %oe0 = tensor.empty(%nb, %hq, %tp{"" if value_dim is not None else ", %dv"}) : {v4}
  // Zeros where the op writes nothing (a call it rejects), never uninitialized memory.
  %oe = linalg.fill ins(%zero : {elem}) outs(%oe0 : {v4}) -> {v4}
  %oh = sparsek.select_attention ins(%qp, %kp, %vp, %up : {q4}, {k4}, {v4}, {u3}) k = {k} w = {w}{_scale(scale)} outs(%oe : {v4}) -> {v4}
  %hasb = arith.cmpi sgt, %nb, %c0 : index
  %hast = arith.cmpi sgt, %tp, %c0 : index
  %any = arith.andi %hasb, %hast : i1
  %r = scf.if %any -> ({v}) {{
    %g = linalg.generic {{indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]}} outs(%o0 : {v}) {{
    ^bb0(%old: {elem}):
      %row = linalg.index 0 : index
      %head = linalg.index 1 : index
      %col = linalg.index 2 : index
      // The sequence holding packed row %row: the last b < B with cuq[b] <= row.
      %bs:2 = scf.while (%lo = %c0, %hi = %nb) : (index, index) -> (index, index) {{
        %span = arith.subi %hi, %lo : index
        %more = arith.cmpi sgt, %span, %c1 : index
        scf.condition(%more) %lo, %hi : index, index
      }} do {{
      ^bb0(%lo: index, %hi: index):
        %sum = arith.addi %lo, %hi : index
        %mid = arith.divui %sum, %c2 : index
        %atm = tensor.extract %cuq[%mid] : {cu}
        %at = arith.index_cast %atm : i32 to index
        %le = arith.cmpi sle, %at, %row : index
        %lo2 = arith.select %le, %mid, %lo : index
        %hi2 = arith.select %le, %hi, %mid : index
        scf.yield %lo2, %hi2 : index, index
      }}
{_sequence("o_", "bs#0")}      %x0 = arith.cmpi sge, %row, %o_q0 : index
      %x1 = arith.cmpi slt, %row, %o_q1 : index
      %x2 = arith.andi %x0, %x1 : i1
      %mine = arith.andi %x2, %o_ok : i1
      %rel = arith.subi %row, %o_q0 : index
      %i0 = arith.addi %o_i0, %rel : index
{_clamp("i", "i0", "tp")}      %val = tensor.extract %oh[%bs#0, %head, %i, %col] : {v4}
{_select("y", "mine", "val", "old", elem, "      ")}      linalg.yield %y : {elem}
    }} -> {v}
    scf.yield %g : {v}
  }} else {{
    scf.yield %o0 : {v}
  }}
  return %r : {v}"""
    args = [("q", q), ("k", kk), ("v", v), ("u", u), ("cuq", cu), ("cuk", cu), ("tp0", "index"),
            ("sp0", "index"), ("o0", v)]
    return _func(name, args, [v], body)


def loop_module(k, w, elem="f32", scale=None):
    """The module of `varlen_function` (entry point "varlen"), the text the CPU path compiles."""
    return "module {\n" + varlen_function("varlen", k, w, elem, scale) + "}\n"


def _library(k, w, elem, scale):
    key = (k, w, elem, scale)
    if key not in _LIBS:
        _LIBS[key] = CompiledLibrary(compiler.compile(loop_module(k, w, elem, scale)))
    return _LIBS[key]


def _offsets(cu, total, name):
    cu = np.asarray(cu)
    if cu.ndim != 1 or cu.size < 1 or not np.issubdtype(cu.dtype, np.integer):
        raise ValueError(f"{name}: expected a 1-D integer array [B + 1], got {cu.dtype} {cu.shape}")
    if cu[0] != 0 or cu[-1] != total or np.any(np.diff(cu) < 0):
        raise ValueError(f"{name}: offsets must rise from 0 to {total} (the packed rows), got "
                         f"{cu.tolist() if cu.size <= 16 else cu}")
    if total > np.iinfo(np.int32).max:
        raise ValueError(f"{name}: {total} rows do not fit int32 offsets")
    return np.ascontiguousarray(cu, dtype=np.int32)


def _array(a, elem, name, ndim):
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    if elem == "bf16" and a.dtype != np.uint16:
        a = to_bf16_bits(a)
    return np.ascontiguousarray(a, dtype=NUMPY_DTYPES[elem])


_TORCH_ELEMS = {"torch.float32": "f32", "torch.float16": "f16", "torch.bfloat16": "bf16"}


def padded_module(k, w, elem="f32", scale=None, head_dim=None, value_dim=None):
    """The module of `padded_function` (entry point "varlen"), the text the GPU path compiles."""
    return "module {\n" + padded_function("varlen", k, w, elem, scale, head_dim, value_dim) + "}\n"


def _check_shapes(q, key, value, u):
    (tq, hq, d), (tk, hkv, dk), (tv, hv, dv) = q.shape, key.shape, value.shape
    if dk != d or tv != tk or hv != hkv or tuple(u.shape) != (tk, hkv):
        raise ValueError(f"shapes disagree: q {tuple(q.shape)}, key {tuple(key.shape)}, value "
                         f"{tuple(value.shape)}, u {tuple(u.shape)} (want key [total_k, Hkv, {d}], "
                         "value [total_k, Hkv, Dv], u [total_k, Hkv])")
    if hkv == 0 or hq % hkv:
        raise ValueError(f"Hq = {hq} must be a positive multiple of Hkv = {hkv}")
    return tq, tk, hq, dv


def _check_offsets(cu_seqlens_q, cu_seqlens_k, tq, tk):
    cuq = _offsets(cu_seqlens_q, tq, "cu_seqlens_q")
    cuk = _offsets(cu_seqlens_k, tk, "cu_seqlens_k")
    if cuq.size != cuk.size:
        raise ValueError(f"cu_seqlens_q has {cuq.size - 1} sequences, cu_seqlens_k {cuk.size - 1}")
    longer = np.nonzero(np.diff(cuq) > np.diff(cuk))[0]
    if longer.size:
        raise ValueError(f"sequences {longer.tolist()} have more queries than keys (T_b <= S_b)")
    return cuq, cuk


def _host_offsets(cu):
    """Offsets as a host array (a CUDA tensor is copied, which waits for its stream)."""
    if hasattr(cu, "detach") and hasattr(cu, "cpu"):
        return cu.detach().cpu().numpy()
    return cu


def select_attention(q, key, value, u, cu_seqlens_q, cu_seqlens_k, k, w, scale=None, elem="f32"):
    """out [total_q, Hq, Dv] of packed sequences (module docstring). numpy arrays in, numpy
    out (bf16 as uint16 bit patterns; `elem` names the type), one compiled CPU call. torch
    CUDA tensors in (bf16, f16 or f32; u f32), a CUDA tensor out: one GPU call of the padded
    form (`padded_function`) on torch's current stream; the offsets are read on the host
    (lists, numpy arrays or tensors; a CUDA tensor is copied to the host first). Raises
    ValueError on inconsistent shapes or offsets."""
    if getattr(q, "is_cuda", False):
        return _select_attention_cuda(q, key, value, u, cu_seqlens_q, cu_seqlens_k, k, w, scale)
    q, key, value = (_array(a, elem, n, 3) for a, n in ((q, "q"), (key, "key"), (value, "value")))
    u = _array(u, "f32", "u", 2)
    tq, tk, hq, dv = _check_shapes(q, key, value, u)
    cuq, cuk = _check_offsets(cu_seqlens_q, cu_seqlens_k, tq, tk)
    out = np.zeros((tq, hq, dv), NUMPY_DTYPES[elem])
    _library(k, w, elem, scale).call("varlen", q, key, value, u, cuq, cuk, out)
    return out


def _select_attention_cuda(q, key, value, u, cu_seqlens_q, cu_seqlens_k, k, w, scale):
    import torch

    elem = _TORCH_ELEMS.get(str(q.dtype))
    if elem is None:
        raise TypeError(f"q: expected float32, float16 or bfloat16, got {q.dtype}")
    for a, n in ((key, "key"), (value, "value")):
        if a.dtype != q.dtype or a.dim() != 3:
            raise TypeError(f"{n}: expected a 3-D {q.dtype} tensor, got {a.dtype} {tuple(a.shape)}")
    if q.dim() != 3 or u.dim() != 2 or u.dtype != torch.float32:
        raise TypeError(f"expected q [total_q, Hq, D] and u [total_k, Hkv] float32, got "
                        f"{tuple(q.shape)} and {u.dtype} {tuple(u.shape)}")
    tq, tk, hq, dv = _check_shapes(q, key, value, u)
    cuq, cuk = _check_offsets(_host_offsets(cu_seqlens_q), _host_offsets(cu_seqlens_k), tq, tk)
    out = torch.zeros((tq, hq, dv), dtype=q.dtype, device=q.device)
    tp, sp = alignment(cuq, cuk, w)
    if tp == 0:
        return out
    key_of = (k, w, elem, scale, q.shape[2], dv)
    if key_of not in _GPU_LIBS:
        text = padded_module(k, w, elem, scale, q.shape[2], dv)
        _GPU_LIBS[key_of] = GPULibrary(compile_gpu(text))
    dev = [torch.from_numpy(c).to(q.device) for c in (cuq, cuk)]
    args = [a.contiguous() for a in (q, key, value, u)]
    _GPU_LIBS[key_of].call("varlen", *args, *dev, tp, sp, out)
    return out


# -- A whole layer over a varlen batch of prompts -------------------------------

def layer_module(cfg, name="varlen_layer"):
    """One entry point `name`: SparseKAttention's layer (sparsek.layer.LayerConfig `cfg`) over
    packed prompts x [N, C], each token at its position `pos` [N] (i64) within its sequence:
    q, key, value and u of every token (the decode step's projections and scores,
    sparsek.layer.decode_qkv_function), the padded select_attention (offsets
    cu_seqlens_q = cu_seqlens_k, T', S'), the output projection; returns out [N, C] and the
    packed key, value [N, Hkv, D] and u [N, Hkv] for the KV cache. One compiled call."""
    from .layer import _Body, _output_projection, _weight_args, decode_qkv_function

    E, Hq, Hkv, D, C = cfg.dtype, cfg.Hq, cfg.Hkv, cfg.D, cfg.C
    x_t, pos_t, cu = tensor([None, C], E), tensor([None], "i64"), tensor([None], "i32")
    q_t, kv_t, u_t = tensor([None, Hq, D], E), tensor([None, Hkv, D], E), tensor([None, Hkv], "f32")
    dq_t, du_t = tensor([None, None, D], E), tensor([None, None], "f32")
    weights = _weight_args(cfg)
    qkv_w = [(n, t) for n, t in weights if n != "wo"]
    args = ([("x", x_t), ("pos", pos_t), ("cu", cu), ("tp", "index"), ("sp", "index")] + weights
            + [("out", x_t), ("key_out", kv_t), ("value_out", kv_t), ("u_out", u_t)])
    wnames = ", ".join(f"%{n}" for n, _ in qkv_w)
    wtypes = ", ".join(t for _, t in qkv_w)
    body = f"""  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : {x_t}
  %q0 = tensor.empty(%n) : {q_t}
  %q, %key, %value, %u = call @{name}_qkv(%x, %pos, {wnames}, %q0, %key_out, %value_out, %u_out) : ({x_t}, {pos_t}, {wtypes}, {q_t}, {kv_t}, {kv_t}, {u_t}) -> ({q_t}, {kv_t}, {kv_t}, {u_t})
  %o0 = tensor.empty(%n) : {q_t}
  // The attention takes any head counts: cast to its dynamic types and back.
  %qd = tensor.cast %q : {q_t} to {dq_t}
  %kd = tensor.cast %key : {kv_t} to {dq_t}
  %vd = tensor.cast %value : {kv_t} to {dq_t}
  %ud = tensor.cast %u : {u_t} to {du_t}
  %od = tensor.cast %o0 : {q_t} to {dq_t}
  %oa = call @{name}_attend(%qd, %kd, %vd, %ud, %cu, %cu, %tp, %sp, %od) : ({dq_t}, {dq_t}, {dq_t}, {du_t}, {cu}, {cu}, index, index, {dq_t}) -> {dq_t}
  %o = tensor.cast %oa : {dq_t} to {q_t}
  %r = call @{name}_proj(%o, %wo, %out) : ({q_t}, {tensor([Hq * D, C], E)}, {x_t}) -> {x_t}
  return %r, %key, %value, %u : {x_t}, {kv_t}, {kv_t}, {u_t}"""
    main = _func(name, args, [x_t, kv_t, kv_t, u_t], body)
    # The parts, private (the pipelines inline them).
    qkv = decode_qkv_function(f"{name}_qkv", cfg)
    attend = padded_function(f"{name}_attend", cfg.k, cfg.w, E, cfg.scale, D, D)
    pbody = _Body()
    pbody.emit(f"%nb = tensor.dim %o, %c0 : {q_t}")
    out = _output_projection(pbody, cfg, "%o", q_t, "%wo", "%out", decode=True)
    proj = (f"func.func @{name}_proj(%o: {q_t}, %wo: {tensor([Hq * D, C], E)}, %out: {x_t}) -> ({x_t}) {{\n"
            "  %c0 = arith.constant 0 : index\n  %c1 = arith.constant 1 : index\n"
            f"  %f0 = arith.constant 0.0 : f32\n{pbody.text()}\n  return {out} : {x_t}\n}}\n")
    private = lambda f: f.replace("func.func @", "func.func private @", 1)  # noqa: E731
    return "module {\n" + "\n".join([main] + [private(f) for f in (qkv, attend, proj)]) + "}\n"


class Layer:
    """`layer_module(cfg)` compiled for the CPU (numpy arrays) or the GPU (torch CUDA
    tensors), through the compiler's disk cache."""

    def __init__(self, cfg, name="varlen_layer"):
        self.cfg, self.name = cfg, name
        self._cpu = self._gpu = None

    def module_text(self):
        return layer_module(self.cfg, self.name)

    def prebuild(self, cpu=True, gpu=True):
        """Compiles into the disk cache without loading; returns the paths."""
        text = self.module_text()
        return ([compiler.compile(text)] if cpu else []) + \
            ([compile_gpu(text)] if gpu else [])

    def library(self):
        if self._cpu is None:
            self._cpu = CompiledLibrary(compiler.compile(self.module_text()))
        return self._cpu

    def gpu_library(self):
        if self._gpu is None:
            self._gpu = GPULibrary(compile_gpu(self.module_text()))
        return self._gpu

    def geometry(self, cu_seqlens, total):
        """Host checks of the offsets: (cu int32, positions int64 [N], T', S')."""
        cu = _offsets(_host_offsets(cu_seqlens), total, "cu_seqlens")
        lengths = np.diff(cu)
        pos = np.arange(total, dtype=np.int64) - np.repeat(cu[:-1].astype(np.int64), lengths)
        tp, sp = alignment(cu, cu, self.cfg.w)
        return cu, pos, tp, sp

    def __call__(self, x, weights, cu_seqlens):
        """numpy x [N, C] (packed prompts), `weights` name -> array (sparsek.CompiledLayer's),
        offsets [B + 1]: out [N, C], key, value [N, Hkv, D], u [N, Hkv]."""
        cfg = self.cfg
        x = _array(x, cfg.dtype, "x", 2)
        if x.shape[1] != cfg.C:
            raise ValueError(f"x: expected [N, {cfg.C}], got {x.shape}")
        n = x.shape[0]
        cu, pos, tp, sp = self.geometry(cu_seqlens, n)
        from .compiled_layer import CompiledLayer

        w = CompiledLayer(cfg)._weights(weights)
        e = NUMPY_DTYPES[cfg.dtype]
        out = np.zeros((n, cfg.C), e)
        key, value = (np.zeros((n, cfg.Hkv, cfg.D), e) for _ in range(2))
        u = np.zeros((n, cfg.Hkv), np.float32)
        self.library().call(self.name, x, pos, cu, tp, sp, *w, out, key, value, u)
        return out, key, value, u

    def cuda(self, x, weights, cu_seqlens):
        """The same on torch CUDA tensors (x, weights), on torch's current stream."""
        import torch

        from .compiled_layer import CompiledLayer

        cfg = self.cfg
        if x.dim() != 2 or x.shape[1] != cfg.C:
            raise ValueError(f"x: expected [N, {cfg.C}], got {tuple(x.shape)}")
        layer = CompiledLayer(cfg)
        x = layer._cuda_tensor(x, x.shape, "x")
        n, dev, dt = x.shape[0], x.device, x.dtype
        cu, pos, tp, sp = self.geometry(cu_seqlens, n)
        w = layer._cuda_weights(weights, dev)
        with torch.cuda.device(dev):
            out = torch.zeros((n, cfg.C), dtype=dt, device=dev)
            key, value = (torch.zeros((n, cfg.Hkv, cfg.D), dtype=dt, device=dev) for _ in range(2))
            u = torch.zeros((n, cfg.Hkv), dtype=torch.float32, device=dev)
            cu_d, pos_d = (torch.from_numpy(a).to(dev) for a in (cu, pos))
            self.gpu_library().call(self.name, x, pos_d, cu_d, tp, sp, *w, out, key, value, u,
                                    stream=torch.cuda.current_stream(dev))
        return out, key, value, u
