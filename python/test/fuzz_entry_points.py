#!/usr/bin/env python3
# Property fuzzer of the compiled CPU entry points: random ops, options, shapes, dtypes and broken calls.
"""Property fuzzer for the compiled CPU entry points.

Every case compiles (through the disk cache) one sparsek function with random
compile-time parameters (op, k, w, element type, static head dimension, index
type, pipeline options), makes a valid call with random sizes and data, and
then may break it in one way (a fault class, below). The call must either
succeed and match `sparsek.reference`, or raise a clear exception
(SparseKError, TypeError, ValueError, NotImplementedError). Never a crash,
never a silent wrong result, never a write outside the output arrays (every
array sits in front of a canary region that is checked after the call, and
inputs are compared with copies).

Which outcome is required comes from the function's signature (static sizes,
element types, ranks, argument count, writable outputs) and from the
reference: a call the reference rejects (NaN scores, T > S, an invalid cache
state, sizes that disagree) must be rejected.

Cases run in a worker process, so a crash is reported with the case that
caused it and fuzzing goes on in a new worker. Case i of a run from seed S
has seed S + i and class CLASSES[(S + i) % len(classes)]; it is replayed in
process with `--repro S+i --classes CLASS`.

Failures that issue 13 has yet to fix are listed, with the item that fixes
them: whole classes in KNOWN_FAILING (`--classes passing` leaves them out),
narrower cases in KNOWN_CASES (reported as known-*, not failures).

usage: fuzz_entry_points.py [--seconds N | --cases N] [--seed S]
                            [--classes a,b | --classes passing] [--json FILE]
Exit status 1 when any case failed.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import time
import traceback

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))

# Fault classes. "valid" calls are unbroken; the others break one thing.
SEMANTIC_CLASSES = ["valid", "dynamic_size", "nan_scores", "queries_exceed_keys",
                    "cache_state", "non_contiguous", "parallel_form_invalid"]
SIGNATURE_CLASSES = ["dtype", "rank", "static_size", "argument_type", "argument_count",
                     "read_only_output", "huge_k"]
CLASSES = SEMANTIC_CLASSES + SIGNATURE_CLASSES
# Classes that fail today, with the item of issue 13 that fixes them. Remove
# a class here once its fix lands (its pytest case is a strict xfail until
# then, so it fails as soon as the class passes).
KNOWN_FAILING = {}
# Narrower known failures inside classes that otherwise pass: (predicate over
# a case's description, reason). A matching failure is reported as "known-..."
# and does not fail the run; remove the entry once its fix lands.
KNOWN_CASES = []

OPS = ["select", "attention", "select_attention", "decode", "score", "mask"]
PIPELINES = ["sparsek-cpu-pipeline",
             "sparsek-cpu-pipeline{parallel-loops}",
             "sparsek-cpu-pipeline{parallel-loops select-chunk=3}",
             "sparsek-cpu-pipeline{fuse-select-attention}"]
CLEAR_ERRORS = ("SparseKError", "TypeError", "ValueError", "NotImplementedError")
CANARY = 64  # bytes after every array
WORKER_MEMORY_GIB = 6  # address space of a worker process


class Arg:
    """One argument: an int, or an array placed in front of a canary region."""

    def __init__(self, name, value, output=False, declared=None):
        self.name, self.output, self.declared = name, output, declared  # declared: (shape, dtype)
        if isinstance(value, np.ndarray):
            buf = np.full(value.nbytes + CANARY, 0xA5, np.uint8)
            arr = buf[:value.nbytes].view(value.dtype).reshape(value.shape)
            arr[...] = value
            self.buf, self.value, self.copy = buf, arr, value.copy()
        else:
            self.buf, self.value, self.copy = None, value, value

    def canary_ok(self):
        return self.buf is None or bool((self.buf[-CANARY:] == 0xA5).all())


def _elem_dtype(elem):
    return {"f32": np.float32, "f16": np.float16, "bf16": np.uint16, "i32": np.int32,
            "i64": np.int64}[elem]


def _cast(x, elem):
    """float64 data as `elem` arrays (bf16 as its bit patterns), and the values they hold."""
    from sparsek import memref

    if elem == "bf16":
        bits = memref.to_bf16_bits(np.asarray(x, np.float32))
        return bits, memref.from_bf16_bits(bits).astype(np.float64)
    a = np.asarray(x).astype(_elem_dtype(elem))
    return a, a.astype(np.float64)


# ----------------------------------------------------------------------------
# Case generation: compile-time config, a valid call, then one fault.
# ----------------------------------------------------------------------------


def make_config(r, fault):
    op = r.choice(OPS)
    if fault in ("queries_exceed_keys",):
        op = r.choice(["select", "attention", "select_attention"])
    if fault == "nan_scores":
        op = r.choice(["select", "select_attention", "mask"])
    if fault == "cache_state":
        op = "decode"
    if fault == "parallel_form_invalid":  # nan_scores or cache_state in the GPU loop form (device status)
        op = r.choice(["select", "select_attention", "decode"])
    if fault == "huge_k":
        op = "select_attention"
    if fault == "static_size":
        op = r.choice(["select", "attention", "decode", "select_attention"])
    # Few values of each compile-time parameter: every combination is a
    # compile (cached on disk), and sizes vary at run time anyway.
    cfg = {"op": op, "k": int(r.choice([1, 2, 5])), "w": int(r.choice([0, 1, 3])),
           "elem": str(r.choice(["f32", "f32", "f16", "bf16"])),
           "head_dim": None if r.random() < 0.5 else int(r.choice([1, 4])),
           "index_type": str(r.choice(["i32", "i64"])),
           "scale": None if r.random() < 0.8 else 0.5,
           "pipeline": str(r.choice(PIPELINES[:3])),
           "mask_rank": int(r.choice([1, 2, 3]))}
    if op == "select_attention":
        cfg["pipeline"] = str(r.choice(PIPELINES))
    if fault in ("nan_scores", "cache_state") or op == "mask":
        # mask has no parallel-loop form; that form's kernels report invalid
        # scores and cache states (device status): parallel_form_invalid.
        cfg["pipeline"] = PIPELINES[0]
    elif fault == "parallel_form_invalid":
        cfg["pipeline"] = PIPELINES[1]
    if (("parallel-loops" in cfg["pipeline"] or "fuse-select-attention" in cfg["pipeline"])
            and op != "select" and cfg["head_dim"] is None):
        cfg["head_dim"] = 4  # these forms keep per-query scratch on the stack
    if fault == "huge_k":
        cfg["k"] = int(r.choice([1 << 28, 1 << 30, (1 << 31) - 1]))
    if fault == "static_size" and op in ("attention", "select_attention") and cfg["head_dim"] is None:
        cfg["head_dim"] = 4
    return cfg


def function_text(cfg):
    from sparsek import ir

    op, k, w = cfg["op"], cfg["k"], cfg["w"]
    if op == "select":
        f = ir.select_function("f", k, w, index_type=cfg["index_type"])
    elif op == "attention":
        f = ir.attention_function("f", w, elem=cfg["elem"], index_type=cfg["index_type"],
                                  scale=cfg["scale"], k=k, head_dim=cfg["head_dim"])
    elif op == "select_attention":
        f = ir.select_attention_function("f", k, w, elem=cfg["elem"], scale=cfg["scale"],
                                         head_dim=cfg["head_dim"])
    elif op == "decode":
        f = ir.decode_function("f", k, w, elem=cfg["elem"], scale=cfg["scale"],
                               head_dim=cfg["head_dim"])
    elif op == "score":
        f = ir.score_function("f", elem=cfg["elem"], bias=True, slope=True, offset=True)
    else:
        f = ir.mask_function("f", k, rank=cfg["mask_rank"])
    return ir.module(f)


def _scores(r, shape, masked=0.15):
    u = r.normal(size=shape) * r.choice([0.5, 2.0, 30.0])
    if r.random() < 0.3:  # ties
        u = np.round(u)
    u[r.random(shape) < masked] = -np.inf
    return u.astype(np.float32)


def make_call(r, cfg):
    """A valid call: (args, reference function over the args' values)."""
    from sparsek import reference

    op, k, w, elem = cfg["op"], cfg["k"], cfg["w"], cfg["elem"]
    B = int(r.choice([0, 1, 1, 2, 3]))
    Hkv = int(r.choice([1, 2]))
    Hq = Hkv * int(r.choice([1, 2]))
    S = int(r.integers(0, 24))
    T = int(r.integers(0, S + 1))
    D = cfg["head_dim"] or int(r.integers(1, 10))
    out_t = np.float32 if elem == "f32" else _elem_dtype(elem)

    def fl(shape, name):
        return _cast(r.normal(size=shape), elem)[0]

    if op == "select":
        u = _scores(r, (B, Hkv, S))
        it = _elem_dtype(cfg["index_type"])
        args = [Arg("u", u), Arg("indices", np.zeros((B, Hkv, T, k), it), True),
                Arg("gates", np.zeros((B, Hkv, T, k), np.float32), True),
                Arg("tau", np.zeros((B, Hkv, T), np.float32), True)]

        def ref(a):
            return reference.select(a[0], k, w, T=a[1].shape[2])
    elif op == "attention":
        q, key, val = fl((B, Hq, T, D), "q"), fl((B, Hkv, S, D), "k"), fl((B, Hkv, S, D), "v")
        idx, gates, _ = reference.select(_scores(r, (B, Hkv, S)), k, w, T=T)
        if r.random() < 0.3 and idx.size:  # entries the op must ignore (window, future)
            idx = np.where(r.random(idx.shape) < 0.2, r.integers(0, S + 3, idx.shape), idx)
            idx = np.sort(np.where(idx < 0, 10 ** 6, idx), axis=-1)
            # A selection is a set: a repeated position becomes padding.
            repeated = np.zeros(idx.shape, bool)
            repeated[..., 1:] = idx[..., 1:] == idx[..., :-1]
            idx = np.where((idx == 10 ** 6) | repeated, -1, idx)
        args = [Arg("q", q), Arg("key", key), Arg("value", val),
                Arg("indices", idx.astype(_elem_dtype(cfg["index_type"]))),
                Arg("gates", gates.astype(np.float32)),
                Arg("out", np.zeros((B, Hq, T, D), out_t), True)]

        def ref(a):
            return reference.attention(*(_values(x, elem) for x in a[:3]), a[3], a[4], w,
                                       scale=cfg["scale"])
    elif op == "select_attention":
        q, key, val = fl((B, Hq, T, D), "q"), fl((B, Hkv, S, D), "k"), fl((B, Hkv, S, D), "v")
        args = [Arg("q", q), Arg("key", key), Arg("value", val), Arg("u", _scores(r, (B, Hkv, S))),
                Arg("out", np.zeros((B, Hq, T, D), out_t), True)]

        def ref(a):
            # k >= the candidates selects them all: the reference with k = S is the same.
            kr = min(k, max(a[3].shape[-1], 1)) if k > 4096 else k
            return reference.sparsek_attention(*(_values(x, elem) for x in a[:3]), a[3], kr, w,
                                               scale=cfg["scale"])
    elif op == "decode":
        lengths = [int(r.integers(1, 3 * (k + w) + 2)) for _ in range(B)]
        caches = [reference.DecodeCache(Hkv, k, w) for _ in lengths]
        for n, c in zip(lengths, caches):
            for _ in range(n):
                c.append(r.normal(size=(Hkv, D)), r.normal(size=(Hkv, D)), r.normal(size=Hkv))
        sl = [c.slots() for c in caches]

        def stack(f, dt, shape):
            return np.stack([getattr(s, f) for s in sl]).astype(dt) if sl else np.zeros(shape, dt)
        kv_shape = (B, Hkv, k + w, D)
        args = [Arg("q", fl((B, Hq, D), "q")),
                Arg("kslots", _cast(stack("kslots", np.float64, kv_shape), elem)[0]),
                Arg("vslots", _cast(stack("vslots", np.float64, kv_shape), elem)[0]),
                Arg("slot_scores", stack("slot_scores", np.float32, (B, Hkv, k + w))),
                Arg("tau", stack("tau", np.float32, (B, Hkv))),
                Arg("pool_count", stack("pool_count", np.int32, (B, Hkv))),
                Arg("pos", np.array([s.pos for s in sl], np.int64).reshape(B)),
                Arg("out", np.zeros((B, Hq, D), out_t), True)]

        def ref(a):
            return reference.decode_attention(*(_values(x, elem) for x in a[:3]), *a[3:7], k, w,
                                              scale=cfg["scale"])
    elif op == "score":
        C = int(r.integers(1, 12))
        args = [Arg("x", fl((B, T, C), "x")), Arg("wsc", fl((Hkv, C), "w")),
                Arg("bias", r.normal(size=Hkv).astype(np.float32)),
                Arg("slope", (r.normal(size=Hkv) * 0.1).astype(np.float32)),
                Arg("offset", int(r.integers(0, 50))),
                Arg("u", np.zeros((B, Hkv, T), np.float32), True)]

        def ref(a):
            return reference.score(_values(a[0], elem), _values(a[1], elem), a[2], a[3], a[4])
    else:  # mask
        lead = tuple(int(r.integers(0, 4)) for _ in range(cfg["mask_rank"] - 1))
        N = int(r.integers(0, 20))
        args = [Arg("z", _scores(r, lead + (N,), masked=0.1)),
                Arg("p", np.zeros(lead + (N,), np.float32), True),
                Arg("tau", np.zeros(lead, np.float32), True)]

        def ref(a):
            return reference.sparsek_mask(a[0], k)
    for a in args:
        if isinstance(a.value, np.ndarray):
            a.declared = (_declared_shape(cfg, a.name, a.value.shape), a.value.dtype)
    return args, ref


def _values(x, elem):
    """The float64 values an operand of element type `elem` holds."""
    from sparsek import memref

    x = np.asarray(x)
    if elem == "bf16" and x.dtype == np.uint16:
        return memref.from_bf16_bits(x).astype(np.float64)
    return x.astype(np.float64)


def _declared_shape(cfg, name, shape):
    """The function type's sizes of an operand: None where dynamic."""
    op, k, w, hd = cfg["op"], cfg["k"], cfg["w"], cfg["head_dim"]
    dyn = [None] * len(shape)
    if op in ("select", "attention") and name in ("indices", "gates"):
        return tuple(dyn[:-1] + [k])
    if op in ("attention", "select_attention") and name in ("q", "key", "value", "out"):
        return tuple(dyn[:-1] + [hd])
    if op == "decode":
        if name in ("kslots", "vslots"):
            return (None, None, k + w, hd)
        if name == "slot_scores":
            return (None, None, k + w)
        if name in ("q", "out"):
            return (None, None, hd)
    if op == "score" and name in ("bias", "slope"):
        return (None,)
    return tuple(dyn)


# ----------------------------------------------------------------------------
# Faults: each breaks one thing of a valid call; `invalid` says whether the
# signature alone already makes the call invalid.
# ----------------------------------------------------------------------------


def apply_fault(r, cfg, args, fault):
    arrays = [a for a in args if isinstance(a.value, np.ndarray)]
    if fault == "valid" or fault == "huge_k":
        return args, False, "unbroken"
    if fault == "dtype":
        a = arrays[r.integers(len(arrays))]
        choices = [d for d in (np.float64, np.float16, np.float32, np.int32, np.int64, np.uint16)
                   if np.dtype(d) != a.value.dtype]
        d = choices[r.integers(len(choices))]
        args[args.index(a)] = Arg(a.name, a.value.astype(d), a.output, a.declared)
        return args, True, f"{a.name} as {np.dtype(d).name} (declared {a.value.dtype.name})"
    if fault == "rank":
        a = arrays[r.integers(len(arrays))]
        v = a.value[None] if (r.random() < 0.5 or a.value.ndim < 2) else \
            a.value.reshape(a.value.shape[:-2] + (-1,) if a.value.size else a.value.shape[:-2] + (0,))
        args[args.index(a)] = Arg(a.name, np.ascontiguousarray(v), a.output, a.declared)
        return args, True, f"{a.name} of rank {v.ndim} (declared {a.value.ndim})"
    if fault == "static_size":
        static = [a for a in arrays if any(d is not None for d in a.declared[0])]
        if not static:
            return args, False, "no static size"
        a = static[r.integers(len(static))]
        dims = [i for i, d in enumerate(a.declared[0]) if d is not None]
        i = dims[r.integers(len(dims))]
        shape = list(a.value.shape)
        shape[i] = max(0, shape[i] + int(r.choice([-3, -2, -1, 1, 2, 5])))
        if shape[i] == a.declared[0][i]:
            shape[i] += 1
        v = np.resize(a.value, shape).astype(a.value.dtype)
        args[args.index(a)] = Arg(a.name, v, a.output, a.declared)
        return args, True, f"{a.name} dim {i} = {shape[i]} (declared {a.declared[0][i]})"
    if fault == "argument_type":
        i = int(r.integers(len(args)))
        a = args[i]
        if isinstance(a.value, np.ndarray):
            args[i] = Arg(a.name, int(r.integers(0, 5)), a.output, a.declared)
            return args, True, f"{a.name} as an int"
        args[i] = Arg(a.name, np.zeros(2, np.int64))
        return args, True, f"{a.name} as an array"
    if fault == "argument_count":
        if r.random() < 0.5 or len(args) < 2:
            extra = args[-1].value.copy() if isinstance(args[-1].value, np.ndarray) else 1
            return args + [Arg("extra", extra)], True, "one argument too many"
        return args[:-1], True, "one argument too few"
    if fault == "read_only_output":
        outs = [a for a in arrays if a.output and a.value.size]
        if not outs:
            return args, False, "no non-empty output"
        a = outs[r.integers(len(outs))]
        a.value.flags.writeable = False
        return args, True, f"{a.name} read-only"
    if fault == "non_contiguous":
        a = arrays[r.integers(len(arrays))]
        if a.value.ndim == 0 or a.value.shape[-1] < 1:
            return args, False, "nothing to stride"
        wide = np.repeat(a.value, 2, axis=-1)
        v = wide[..., ::2]
        assert not v.flags.c_contiguous or v.size <= 1
        a.value, a.buf = v, None
        return args, False, f"{a.name} strided"
    if fault == "parallel_form_invalid":
        fault = "cache_state" if cfg["op"] == "decode" else "nan_scores"
    if fault == "nan_scores":
        a = next(x for x in arrays if x.name in ("u", "z"))
        if a.value.size == 0:
            return args, False, "no scores"
        flat = a.value.reshape(-1)
        flat[r.integers(flat.size)] = r.choice([np.nan, np.inf])
        a.copy = a.value.copy()
        return args, False, f"NaN/+inf in {a.name}"
    if fault == "queries_exceed_keys":
        # More queries than keys: grow T in the query-side operands.
        names = {"select": ("indices", "gates", "tau"), "attention": ("q", "indices", "gates", "out"),
                 "select_attention": ("q", "out")}[cfg["op"]]
        S = args[1].value.shape[2] if cfg["op"] != "select" else args[0].value.shape[2]
        extra = int(r.integers(1, 4))
        for i, a in enumerate(args):
            if a.name in names:
                shape = list(a.value.shape)
                shape[2] = S + extra
                v = np.resize(a.value, shape).astype(a.value.dtype)
                if a.name == "indices":
                    v[...] = -1
                args[i] = Arg(a.name, v, a.output, a.declared)
        return args, False, f"T = S + {extra}"
    if fault == "cache_state":
        what = r.choice(["pos", "pool_count", "tau"])
        a = next(x for x in args if x.name == what)
        if a.value.size == 0:
            return args, False, "empty batch"
        flat = a.value.reshape(-1)
        i = int(r.integers(flat.size))
        flat[i] = {"pos": -1 - int(r.integers(0, 5)), "pool_count": cfg["k"] + 1 + int(r.integers(0, 3)),
                   "tau": np.nan}[what]
        a.copy = a.value.copy()
        return args, False, f"{what}[{i}] = {flat[i]}"
    if fault == "dynamic_size":
        dyn = [(a, i) for a in arrays for i, d in enumerate(a.declared[0]) if d is None]
        if not dyn:
            return args, False, "no dynamic size"
        a, i = dyn[r.integers(len(dyn))]
        shape = list(a.value.shape)
        shape[i] = max(0, shape[i] + int(r.choice([-2, -1, 1, 3])))
        v = np.resize(a.value, shape).astype(a.value.dtype)
        if a.name in ("u", "z", "slot_scores"):
            v[...] = _scores(r, tuple(shape))
        if a.name == "pos":
            v[...] = np.abs(v)
        args[args.index(a)] = Arg(a.name, v, a.output, a.declared)
        return args, False, f"{a.name} dim {i} = {shape[i]}"
    raise ValueError(f"unknown fault class {fault}")


def signature_violated(args, nargs, cfg):
    """What the function type says is wrong with the arguments, or None."""
    if len(args) != nargs:
        return "argument count"
    for a in args:
        if a.declared is None:
            if isinstance(a.value, np.ndarray):
                return f"{a.name}: array for an index"
            continue
        shape, dtype = a.declared
        v = a.value
        if not isinstance(v, np.ndarray):
            return f"{a.name}: not an array"
        if v.dtype != dtype:
            return f"{a.name}: dtype"
        if v.ndim != len(shape):
            return f"{a.name}: rank"
        if any(d is not None and d != n for d, n in zip(shape, v.shape)):
            return f"{a.name}: static size"
        if a.output and not v.flags.writeable:
            return f"{a.name}: read-only"
    return None


# ----------------------------------------------------------------------------
# Running one case and judging it.
# ----------------------------------------------------------------------------

_LIBS = {}


def _library(cfg):
    from sparsek import toolchain
    from sparsek.cpu import CompiledLibrary

    text = function_text(cfg)
    key = (text, cfg["pipeline"])
    if key not in _LIBS:
        _LIBS[key] = CompiledLibrary(toolchain.compile_shared_library(text, pipeline=cfg["pipeline"]))
    return _LIBS[key]


def _close(got, want, cfg, args):
    """SPEC 8 comparison of one output; returns a message or None."""
    got = _values(got, cfg["elem"] if got.dtype == np.uint16 else "f32")
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    if got.size == 0:
        return None
    low = cfg["elem"] != "f32" and cfg["op"] in ("attention", "select_attention", "decode")
    vals = [a.value for a in args if a.name in ("value", "vslots", "x", "wsc")]
    vmax = max([float(np.max(np.abs(_values(v, cfg["elem"])))) for v in vals if v.size] + [1.0])
    if cfg["op"] == "score":
        C = args[0].value.shape[-1]
        atol, rtol = 1e-5 * vmax * vmax * C + 1e-4, 1e-4 if cfg["elem"] != "f32" else 1e-5
        if cfg["elem"] != "f32":
            atol, rtol = 1e-2 * vmax * vmax * C + 1e-2, 1e-2
    elif low:
        atol, rtol = 2e-2 * vmax, 0.0
    else:
        atol, rtol = 2e-6 * vmax + 1e-6, 1e-5
    finite = np.isfinite(want)
    if not np.array_equal(np.isfinite(got), finite) or not np.array_equal(got[~finite], want[~finite]):
        return "non-finite entries differ"
    err = np.abs(got[finite] - want[finite]) - (atol + rtol * np.abs(want[finite]))
    if (err > 0).any():
        return f"max excess error {float(err.max()):.3g} (atol {atol:.3g})"
    return None


def _compare(cfg, args, want):
    op = cfg["op"]
    if op == "select":
        idx, gates, tau = want
        got_idx = args[1].value.astype(np.int64)
        if not np.array_equal(got_idx, idx):
            return "indices differ"
        u = np.where(np.isfinite(args[0].value), args[0].value, 0)
        scale = max(1.0, float(np.max(np.abs(u)))) if u.size else 1.0
        for name, g, wv in (("gates", args[2].value, gates), ("tau", args[3].value, tau)):
            g64, w64 = g.astype(np.float64), np.asarray(wv, np.float64)
            same = (g64 == w64) | (np.abs(g64 - w64) <= 1e-6 * scale * 4)
            if not same.all():
                return f"{name} differ"
        return None
    if op == "mask":
        p, tau = want
        z = np.where(np.isfinite(args[0].value), args[0].value, 0)
        scale = max(1.0, float(np.max(np.abs(z)))) if z.size else 1.0
        for name, g, wv in (("p", args[1].value, p), ("tau", args[2].value, tau)):
            g64, w64 = g.astype(np.float64), np.asarray(wv, np.float64)
            if not ((g64 == w64) | (np.abs(g64 - w64) <= 4e-6 * scale)).all():
                return f"{name} differ"
        return None
    out = next(a for a in args if a.name in ("out", "u") and a.output)
    return _close(out.value, want, cfg, args)


def prepare_case(case_seed, fault):
    """The case of this seed and class, without compiling or calling anything:
    (description, config, args, reference, argument count of the function)."""
    r = np.random.default_rng(case_seed)
    cfg = make_config(r, fault)
    args, ref = make_call(r, cfg)
    nargs = len(args)
    args, _, what = apply_fault(r, cfg, args, fault)
    shapes = {a.name: (list(a.value.shape) if isinstance(a.value, np.ndarray) else a.value)
              for a in args}
    desc = {"seed": case_seed, "class": fault, "config": cfg, "fault": what, "shapes": shapes}
    return desc, cfg, args, ref, nargs


def _expected_code(desc):
    """The status code the CPU path gives for a case's injected invalid data
    (NaN/+inf scores, a bad cache state), or None when the fault has none."""
    from sparsek import status

    what = str(desc.get("fault", ""))
    if what.startswith("NaN/+inf"):
        return status.INVALID_SCORE
    if what.startswith(("pos[", "pool_count[")):
        return status.INVALID_CACHE_STATE
    if what.startswith("tau["):
        return status.INVALID_SCORE
    return None


def run_case(case_seed, fault):
    """Runs one case; returns a dict with its outcome (FAIL-* for a failure,
    known-* for a failure that KNOWN_CASES lists)."""
    res = _run_case(case_seed, fault)
    if res["outcome"].startswith("FAIL-") and "config" in res:
        for matches, reason in KNOWN_CASES:
            if matches(res):
                res["outcome"] = "known-" + res["outcome"][len("FAIL-"):]
                res["detail"] = f"{reason}: {res.get('detail', '')}"
    return res


def _run_case(case_seed, fault):
    desc, cfg, args, ref, nargs = prepare_case(case_seed, fault)
    try:
        lib = _library(cfg)
    except Exception as e:  # a compile failure is a finding too
        return dict(desc, outcome="FAIL-compile", detail=f"{type(e).__name__}: {e}"[:300])
    violated = signature_violated(args, nargs, cfg)
    want, ref_error = None, None
    if violated is None:
        try:
            want = ref([a.value for a in args])
        except (ValueError, IndexError) as e:
            ref_error = f"{type(e).__name__}: {e}"
        if want is not None:  # the outputs passed must have the reference's shapes
            wants = want if isinstance(want, tuple) else (want,)
            outs = [a for a in args if a.output]
            if [tuple(a.value.shape) for a in outs] != [np.shape(x) for x in wants]:
                ref_error = "outputs do not have the result's shape"
    expect_error = violated or ref_error
    want_code = _expected_code(desc) if violated is None else None
    # A strided array may be refused (entry points take contiguous memrefs).
    may_reject = fault == "non_contiguous"
    try:
        lib.call("f", *[a.value for a in args])
        error = None
    except Exception as e:
        error = e
    corrupt = [a.name for a in args if not a.canary_ok()]
    corrupt += [a.name for a in args if not a.output and isinstance(a.value, np.ndarray)
                and not np.array_equal(a.value, a.copy, equal_nan=a.value.dtype.kind == "f")]
    if corrupt:
        return dict(desc, outcome="FAIL-corrupted", detail=f"wrote outside the outputs: {corrupt}")
    if error is not None and type(error).__name__ not in CLEAR_ERRORS:
        return dict(desc, outcome="FAIL-unclear-error",
                    detail=f"{type(error).__name__}: {error}"[:300])
    if expect_error:
        if error is None:
            return dict(desc, outcome="FAIL-accepted-invalid", detail=str(expect_error)[:300])
        if want_code is not None and getattr(error, "code", None) != want_code:
            # Every form reports what the CPU path reports (SPEC 3; the GPU
            # loop form through its device status).
            return dict(desc, outcome="FAIL-wrong-code",
                        detail=f"expected status {want_code}, got {type(error).__name__}: {error}"[:300])
        return dict(desc, outcome="rejected", detail=f"{type(error).__name__}: {error}"[:200])
    if error is not None and may_reject:
        return dict(desc, outcome="rejected", detail=f"{type(error).__name__}: {error}"[:200])
    if error is not None:
        return dict(desc, outcome="FAIL-rejected-valid", detail=f"{type(error).__name__}: {error}"[:300])
    mismatch = _compare(cfg, args, want)
    if mismatch:
        return dict(desc, outcome="FAIL-wrong-result", detail=mismatch)
    return dict(desc, outcome="ok")


# ----------------------------------------------------------------------------
# Worker and driver.
# ----------------------------------------------------------------------------


def worker(seed, classes, count, deadline, progress):
    """Runs cases seed, seed + 1, ... printing one JSON line each; before each
    case its seed and class go to `progress`, so a crash can be attributed."""
    import resource

    # An unchecked huge allocation then fails here instead of taking the
    # machine's memory (it shows up as a crash or an error).
    limit = WORKER_MEMORY_GIB << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    np.seterr(all="ignore")
    for i in range(count):
        if time.time() > deadline:
            break
        case_seed = seed + i
        fault = classes[case_seed % len(classes)]
        with open(progress, "w") as f:
            f.write(json.dumps({"seed": case_seed, "class": fault}))
        try:
            res = run_case(case_seed, fault)
        except Exception:
            res = {"seed": case_seed, "class": fault, "outcome": "FAIL-harness",
                   "detail": traceback.format_exc()[-600:]}
        print(json.dumps(res), flush=True)


def drive(seed, classes, seconds=None, cases=None, log=None):
    """Runs cases in worker processes until the budget is spent; returns the results."""
    import tempfile

    deadline = time.time() + (seconds if seconds is not None else 10 ** 9)
    total = cases if cases is not None else 10 ** 9
    results, next_seed = [], seed
    progress = tempfile.NamedTemporaryFile(prefix="sparsek-fuzz-", delete=False).name
    try:
        while len(results) < total and time.time() < deadline:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(next_seed),
                   "--classes", ",".join(classes), "--cases", str(total - len(results)),
                   "--deadline", str(deadline), "--progress", progress]
            with tempfile.TemporaryFile("w+") as err:
                # Results stream in as the worker prints them (the log stays current).
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
                for line in proc.stdout:
                    if line.startswith("{"):
                        results.append(json.loads(line))
                        if log:
                            log.write(line)
                            log.flush()
                returncode = proc.wait()
                err.seek(0)
                stderr = err.read()
            if returncode == 0:  # done: the count or the time is spent
                break
            last = json.load(open(progress))
            with np.errstate(all="ignore"):
                last = prepare_case(last["seed"], last["class"])[0]
            res = dict(last, outcome="FAIL-crash",
                       detail=f"worker died (status {returncode}): {stderr[-400:]}")
            results.append(res)
            if log:
                log.write(json.dumps(res) + "\n")
            next_seed = last["seed"] + 1
    finally:
        os.unlink(progress)
    return results


def summarize(results):
    by_class = collections.OrderedDict()
    for res in results:
        c = by_class.setdefault(res["class"], collections.Counter())
        c[res["outcome"]] += 1
    lines = []
    for cls, counter in by_class.items():
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))
        lines.append(f"  {cls:22s} {sum(counter.values()):6d} cases: {parts}")
    return "\n".join(lines)


def failures(results):
    return [r for r in results if r["outcome"].startswith("FAIL")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float)
    p.add_argument("--cases", type=int)
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000 * 1000)
    p.add_argument("--classes", default=",".join(CLASSES),
                   help="comma-separated fault classes, or 'passing' (all but KNOWN_FAILING)")
    p.add_argument("--json", help="append one JSON line per case to this file")
    p.add_argument("--repro", type=int, help="run the case with this seed in this process")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    p.add_argument("--progress", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    classes = ([c for c in CLASSES if c not in KNOWN_FAILING] if a.classes == "passing"
               else a.classes.split(","))
    unknown = set(classes) - set(CLASSES)
    if unknown:
        p.error(f"unknown classes {sorted(unknown)}; known: {CLASSES}")
    if a.worker is not None:
        worker(a.worker, classes, a.cases, a.deadline, a.progress)
        return 0
    if a.repro is not None:
        print(json.dumps(run_case(a.repro, classes[a.repro % len(classes)]), indent=1))
        return 0
    if a.seconds is None and a.cases is None:
        a.seconds = 60
    log = open(a.json, "a") if a.json else None
    start = time.time()
    results = drive(a.seed, classes, a.seconds, a.cases, log)
    bad = failures(results)
    print(f"fuzz_entry_points: {len(results)} cases in {time.time() - start:.0f} s from seed {a.seed}")
    print(summarize(results))
    for res in bad[:20]:
        known = KNOWN_FAILING.get(res["class"])
        print(f"  {res['outcome']} seed {res['seed']} ({res['class']}"
              f"{'; known: ' + known if known else ''}): {res.get('detail', '')}\n"
              f"    config {res.get('config')} fault {res.get('fault')} shapes {res.get('shapes')}")
    if bad:
        print(f"{len(bad)} failed; replay one with --repro SEED --classes CLASS")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
