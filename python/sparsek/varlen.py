# Variable-length batches: select_attention over packed sequences with cumulative offsets (FlashAttention's varlen layout), compiled as one entry point.
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
"""

import numpy as np

from . import compiler
from .cpu import CompiledLibrary
from .ir import _check_elem, _func, _scale, tensor
from .kv_cache import NUMPY_DTYPES
from .memref import to_bf16_bits

_LIBS = {}


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


def _library(k, w, elem, scale):
    key = (k, w, elem, scale)
    if key not in _LIBS:
        text = "module {\n" + varlen_function("varlen", k, w, elem, scale) + "}\n"
        _LIBS[key] = CompiledLibrary(compiler.compile(text))
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


def select_attention(q, key, value, u, cu_seqlens_q, cu_seqlens_k, k, w, scale=None, elem="f32"):
    """out [total_q, Hq, Dv] of packed sequences (module docstring); numpy arrays in, numpy out
    (bf16 as uint16 bit patterns). Raises ValueError on inconsistent shapes or offsets."""
    q, key, value = (_array(a, elem, n, 3) for a, n in ((q, "q"), (key, "key"), (value, "value")))
    u = _array(u, "f32", "u", 2)
    (tq, hq, d), (tk, hkv, dk), (tv, hv, dv) = q.shape, key.shape, value.shape
    if dk != d or tv != tk or hv != hkv or u.shape != (tk, hkv):
        raise ValueError(f"shapes disagree: q {q.shape}, key {key.shape}, value {value.shape}, "
                         f"u {u.shape} (want key [total_k, Hkv, {d}], value [total_k, Hkv, Dv], "
                         "u [total_k, Hkv])")
    if hkv == 0 or hq % hkv:
        raise ValueError(f"Hq = {hq} must be a positive multiple of Hkv = {hkv}")
    cuq = _offsets(cu_seqlens_q, tq, "cu_seqlens_q")
    cuk = _offsets(cu_seqlens_k, tk, "cu_seqlens_k")
    if cuq.size != cuk.size:
        raise ValueError(f"cu_seqlens_q has {cuq.size - 1} sequences, cu_seqlens_k {cuk.size - 1}")
    longer = np.nonzero(np.diff(cuq) > np.diff(cuk))[0]
    if longer.size:
        raise ValueError(f"sequences {longer.tolist()} have more queries than keys (T_b <= S_b)")
    out = np.zeros((tq, hq, dv), NUMPY_DTYPES[elem])
    _library(k, w, elem, scale).call("varlen", q, key, value, u, cuq, cuk, out)
    return out
