# Builds the MLIR text of sparsek functions from shapes and options.
"""MLIR text for SparseK functions.

Every builder returns one `func.func` in tensor form whose results are its
`outs` arguments, so after `sparsek-cpu-pipeline` the entry point takes
inputs and destinations and writes the destinations in place. A dimension
given as None is dynamic (`?`): one compiled function then serves every
size. `module(*funcs)` joins functions into a module.
"""

ELEMENT_TYPES = ("f32", "f16", "bf16")


def tensor(shape, elem):
    dims = "x".join("?" if d is None else str(int(d)) for d in shape)
    return f"tensor<{dims}x{elem}>" if dims else f"tensor<{elem}>"


def module(*funcs):
    return "module {\n" + "\n".join(funcs) + "}\n"


def _check_elem(elem):
    if elem not in ELEMENT_TYPES:
        raise ValueError(f"element type must be one of {ELEMENT_TYPES}, got {elem!r}")


def _func(name, args, results, body):
    sig = ", ".join(f"%{n}: {t}" for n, t in args)
    res = ", ".join(results)
    return f"func.func @{name}({sig}) -> ({res}) {{\n{body}\n}}\n"


def _scale(scale):
    return "" if scale is None else f" scale = {float(scale)!r}"


def score_function(name, elem="f32", bias=False, slope=False, offset=False, kv_heads=None):
    """u = score(x [B, T, C], wsc [Hkv, C] (, bias, slope [Hkv]) (, offset))."""
    _check_elem(elem)
    x, w, u = tensor([None] * 3, elem), tensor([kv_heads, None], elem), tensor([None, kv_heads, None], "f32")
    vec = tensor([kv_heads], "f32")
    args = [("x", x), ("wsc", w)]
    extra = ""
    if bias:
        args.append(("bias", vec))
        extra += f" bias(%bias : {vec})"
    if slope:
        args.append(("slope", vec))
        extra += f" slope(%slope : {vec})"
    if offset:
        args.append(("offset", "index"))
        extra += " offset(%offset)"
    args.append(("u0", u))
    body = (f"  %u = sparsek.score ins(%x, %wsc : {x}, {w}){extra} outs(%u0 : {u}) -> {u}\n"
            f"  return %u : {u}")
    return _func(name, args, [u], body)


def mask_function(name, k, rank=2):
    """p, tau = mask(z [..., N], k) on f32 rows."""
    z, t = tensor([None] * rank, "f32"), tensor([None] * (rank - 1), "f32")
    body = (f"  %p, %tau = sparsek.mask ins(%z : {z}) k = {k} outs(%p0, %t0 : {z}, {t}) -> {z}, {t}\n"
            f"  return %p, %tau : {z}, {t}")
    return _func(name, [("z", z), ("p0", z), ("t0", t)], [z, t], body)


def select_function(name, k, w, index_type="i32"):
    """indices, gates, tau = select(u [B, Hkv, S], k, w); T from the outputs."""
    u = tensor([None] * 3, "f32")
    i, g, t = tensor([None] * 3 + [k], index_type), tensor([None] * 3 + [k], "f32"), tensor([None] * 3, "f32")
    body = (f"  %i, %g, %t = sparsek.select ins(%u : {u}) k = {k} w = {w} "
            f"outs(%i0, %g0, %t0 : {i}, {g}, {t}) -> {i}, {g}, {t}\n"
            f"  return %i, %g, %t : {i}, {g}, {t}")
    return _func(name, [("u", u), ("i0", i), ("g0", g), ("t0", t)], [i, g, t], body)


def attention_function(name, w, elem="f32", index_type="i32", scale=None, k=None, head_dim=None):
    """o = attention(q, key, value, indices, gates; w); sizes dynamic except
    the head dim D = Dv when `head_dim` is given (the GPU path needs it)."""
    _check_elem(elem)
    q = tensor([None] * 3 + [head_dim], elem)
    idx, g = tensor([None] * 3 + [k], index_type), tensor([None] * 3 + [k], "f32")
    body = (f"  %o = sparsek.attention ins(%q, %k, %v, %i, %g : {q}, {q}, {q}, {idx}, {g}) "
            f"w = {w}{_scale(scale)} outs(%o0 : {q}) -> {q}\n"
            f"  return %o : {q}")
    return _func(name, [("q", q), ("k", q), ("v", q), ("i", idx), ("g", g), ("o0", q)], [q], body)


def select_attention_function(name, k, w, elem="f32", scale=None, head_dim=None):
    """o = select_attention(q, key, value, u; k, w): selection then attention;
    D = Dv static when `head_dim` is given (the GPU path needs it)."""
    _check_elem(elem)
    q, u = tensor([None] * 3 + [head_dim], elem), tensor([None] * 3, "f32")
    body = (f"  %o = sparsek.select_attention ins(%q, %k, %v, %u : {q}, {q}, {q}, {u}) "
            f"k = {k} w = {w}{_scale(scale)} outs(%o0 : {q}) -> {q}\n"
            f"  return %o : {q}")
    return _func(name, [("q", q), ("k", q), ("v", q), ("u", u), ("o0", q)], [q], body)


def decode_function(name, k, w, elem="f32", scale=None, head_dim=None, num_heads=None,
                    kv_heads=None):
    """o = decode_attention over the runtime's slot layout (k + w slots);
    D = Dv static when `head_dim` is given (the GPU path needs it), Hq and
    Hkv static when `num_heads` / `kv_heads` are (the tile kernel then
    knows G = Hq / Hkv at compile time)."""
    _check_elem(elem)
    q = tensor([None, num_heads, head_dim], elem)
    kv = tensor([None, kv_heads, k + w, head_dim], elem)
    sc, tau = tensor([None, kv_heads, k + w], "f32"), tensor([None, kv_heads], "f32")
    cnt, pos = tensor([None, kv_heads], "i32"), tensor([None], "i64")
    body = (f"  %o = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : "
            f"{q}, {kv}, {kv}, {sc}, {tau}, {cnt}, {pos}) k = {k} w = {w}{_scale(scale)} "
            f"outs(%o0 : {q}) -> {q}\n"
            f"  return %o : {q}")
    args = [("q", q), ("kc", kv), ("vc", kv), ("sc", sc), ("tau", tau), ("cnt", cnt),
            ("pos", pos), ("o0", q)]
    return _func(name, args, [q], body)


# ----------------------------------------------------------------------------
# Gradients (SPEC 5 "Backward"): every gradient is f32.
# ----------------------------------------------------------------------------


def select_attention_grad_function(name, k, w, elem="f32", scale=None, head_dim=None):
    """dq, dkey, dvalue, du = select_attention_grad(q, key, value, u, do; k, w)."""
    _check_elem(elem)
    q, u = tensor([None] * 3 + [head_dim], elem), tensor([None] * 3, "f32")
    g = tensor([None] * 3 + [head_dim], "f32")
    outs = f"{g}, {g}, {g}, {u}"
    body = (f"  %dq, %dk, %dv, %du = sparsek.select_attention_grad "
            f"ins(%q, %k, %v, %u, %do : {q}, {q}, {q}, {u}, {q}) k = {k} w = {w}{_scale(scale)} "
            f"outs(%dq0, %dk0, %dv0, %du0 : {outs}) -> {outs}\n"
            f"  return %dq, %dk, %dv, %du : {outs}")
    args = [("q", q), ("k", q), ("v", q), ("u", u), ("do", q), ("dq0", g), ("dk0", g), ("dv0", g),
            ("du0", u)]
    return _func(name, args, [g, g, g, u], body)


def attention_grad_function(name, w, elem="f32", index_type="i32", scale=None, k=None):
    """dq, dkey, dvalue, dgates = attention_grad(q, key, value, indices, gates, do; w)."""
    _check_elem(elem)
    q, g = tensor([None] * 4, elem), tensor([None] * 4, "f32")
    idx, gates = tensor([None] * 3 + [k], index_type), tensor([None] * 3 + [k], "f32")
    outs = f"{g}, {g}, {g}, {gates}"
    body = (f"  %dq, %dk, %dv, %dg = sparsek.attention_grad "
            f"ins(%q, %k, %v, %i, %g, %do : {q}, {q}, {q}, {idx}, {gates}, {q}) w = {w}{_scale(scale)} "
            f"outs(%dq0, %dk0, %dv0, %dg0 : {outs}) -> {outs}\n"
            f"  return %dq, %dk, %dv, %dg : {outs}")
    args = [("q", q), ("k", q), ("v", q), ("i", idx), ("g", gates), ("do", q), ("dq0", g), ("dk0", g),
            ("dv0", g), ("dg0", gates)]
    return _func(name, args, [g, g, g, gates], body)


def select_grad_function(name, w, index_type="i32", k=None):
    """du = select_grad(u, indices, tau, dgates; w)."""
    u, t = tensor([None] * 3, "f32"), tensor([None] * 3, "f32")
    idx, dg = tensor([None] * 3 + [k], index_type), tensor([None] * 3 + [k], "f32")
    body = (f"  %du = sparsek.select_grad ins(%u, %i, %t, %dg : {u}, {idx}, {t}, {dg}) w = {w} "
            f"outs(%du0 : {u}) -> {u}\n"
            f"  return %du : {u}")
    return _func(name, [("u", u), ("i", idx), ("t", t), ("dg", dg), ("du0", u)], [u], body)


def score_grad_function(name, elem="f32", offset=False):
    """dx, dwsc, dbias, dslope = score_grad(x [B, T, C], wsc [Hkv, C], du [B, Hkv, T] (, offset))."""
    _check_elem(elem)
    x, w, du = tensor([None] * 3, elem), tensor([None] * 2, elem), tensor([None] * 3, "f32")
    dx, dw, vec = tensor([None] * 3, "f32"), tensor([None] * 2, "f32"), tensor([None], "f32")
    outs = f"{dx}, {dw}, {vec}, {vec}"
    args = [("x", x), ("wsc", w), ("du", du)] + ([("offset", "index")] if offset else [])
    args += [("dx0", dx), ("dw0", dw), ("db0", vec), ("ds0", vec)]
    extra = " offset(%offset)" if offset else ""
    body = (f"  %dx, %dw, %db, %ds = sparsek.score_grad ins(%x, %wsc, %du : {x}, {w}, {du}){extra} "
            f"outs(%dx0, %dw0, %db0, %ds0 : {outs}) -> {outs}\n"
            f"  return %dx, %dw, %db, %ds : {outs}")
    return _func(name, args, [dx, dw, vec, vec], body)


def mask_grad_function(name, rank=2):
    """dz = mask_grad(z [..., N], tau [...], dp [..., N]) on f32 rows."""
    z, t = tensor([None] * rank, "f32"), tensor([None] * (rank - 1), "f32")
    body = (f"  %dz = sparsek.mask_grad ins(%z, %t, %dp : {z}, {t}, {z}) outs(%dz0 : {z}) -> {z}\n"
            f"  return %dz : {z}")
    return _func(name, [("z", z), ("t", t), ("dp", z), ("dz0", z)], [z], body)
