# Compiled score, attention, composite and decode ops on the CPU against the float64 reference.
import numpy as np
import pytest

from cpu_harness import assert_output_close, decode_batch, library, rng
from sparsek import ir, reference, status
from sparsek.memref import from_bf16_bits, to_bf16_bits
from sparsek.status import SparseKError


def qkv(g, B, Hq, Hkv, T, S, D, Dv=None):
    Dv = Dv or D
    return (g.normal(size=(B, Hq, T, D)).astype(np.float32),
            g.normal(size=(B, Hkv, S, D)).astype(np.float32),
            g.normal(size=(B, Hkv, S, Dv)).astype(np.float32))


@pytest.mark.parametrize("bias,slope,offset", [(False, False, False), (True, True, True)])
def test_score(bias, slope, offset):
    g = rng(1)
    x = g.normal(size=(2, 9, 24)).astype(np.float32)
    wsc = g.normal(size=(3, 24)).astype(np.float32)
    b = g.normal(size=3).astype(np.float32)
    s = g.normal(size=3).astype(np.float32) * 0.01
    lib = library(ir.score_function("score", bias=bias, slope=slope, offset=offset))
    u = np.zeros((2, 3, 9), np.float32)
    args = [x, wsc] + ([b] if bias else []) + ([s] if slope else []) + ([100] if offset else [])
    lib.call("score", *args, u)
    want = reference.score(x, wsc, b if bias else None, s if slope else None, 100 if offset else 0)
    np.testing.assert_allclose(u, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("B,Hq,Hkv,S,T,k,w", [
    (1, 1, 1, 1, 1, 4, 2),
    (2, 4, 4, 48, 48, 8, 4),    # G = 1
    (1, 8, 2, 64, 20, 8, 6),    # G = 4, cached prefix
    (1, 4, 1, 30, 30, 4, 64),   # w >= T
    (1, 4, 2, 40, 40, 0, 5),    # k = 0: sliding window only
])
def test_select_attention_matches_reference(B, Hq, Hkv, S, T, k, w):
    g = rng(S * 7 + k)
    q, key, value = qkv(g, B, Hq, Hkv, T, S, 16, 8)
    u = (g.normal(size=(B, Hkv, S)) * 2).astype(np.float32)
    u[g.random(u.shape) < 0.1] = -np.inf
    lib = library(ir.select_attention_function("sa", k, w))
    o = np.zeros((B, Hq, T, 8), np.float32)
    lib.call("sa", q, key, value, u, o)
    want = reference.sparsek_attention(q, key, value, u, k, w)
    assert_output_close(o, want, value)


@pytest.mark.parametrize("S,T,Hq,Hkv", [(32, 32, 2, 2), (40, 16, 8, 2)])
def test_k_at_least_s_is_dense_causal(S, T, Hq, Hkv):
    g = rng(S + T)
    q, key, value = qkv(g, 1, Hq, Hkv, T, S, 8)
    u = g.normal(size=(1, Hkv, S)).astype(np.float32)
    lib = library(ir.select_attention_function("sa_dense", S, 3))
    o = np.zeros((1, Hq, T, 8), np.float32)
    lib.call("sa_dense", q, key, value, u, o)
    assert_output_close(o, reference.dense_causal_attention(q, key, value), value)


def test_attention_explicit_indices_with_padding_and_out_of_range():
    g = rng(5)
    B, Hq, Hkv, S, T, K, w = 1, 2, 1, 24, 24, 6, 3
    q, key, value = qkv(g, B, Hq, Hkv, T, S, 8)
    idx = g.integers(-2, S, size=(B, Hkv, T, K)).astype(np.int64)
    for t in range(T):  # unique entries per query, as select produces
        row = np.unique(idx[0, 0, t])
        idx[0, 0, t] = np.concatenate([row, -np.ones(K - len(row), np.int64)])
    gates = g.random(size=(B, Hkv, T, K)).astype(np.float32)
    lib = library(ir.attention_function("attn", w, index_type="i64", k=K, scale=0.3))
    o = np.zeros((B, Hq, T, 8), np.float32)
    lib.call("attn", q, key, value, idx, gates, o)
    want = reference.attention(q, key, value, idx, gates, w, scale=0.3)
    assert_output_close(o, want, value)


@pytest.mark.parametrize("elem", ["bf16", "f16"])
def test_low_precision_attention(elem):
    g = rng(9)
    B, Hq, Hkv, S, T, k, w = 1, 4, 2, 64, 64, 8, 8
    q, key, value = qkv(g, B, Hq, Hkv, T, S, 16)
    u = g.normal(size=(B, Hkv, S)).astype(np.float32)
    if elem == "bf16":
        enc, dec = to_bf16_bits, from_bf16_bits
    else:
        enc, dec = (lambda a: a.astype(np.float16)), (lambda a: a.astype(np.float32))
    qe, ke, ve = enc(q), enc(key), enc(value)
    lib = library(ir.select_attention_function("sa_lp", k, w, elem=elem))
    o = enc(np.zeros((B, Hq, T, 16), np.float32))
    lib.call("sa_lp", qe, ke, ve, u, o)
    # Reference on the same rounded inputs; outputs of unit scale, 2e-2.
    want = reference.sparsek_attention(dec(qe), dec(ke), dec(ve), u, k, w)
    np.testing.assert_allclose(dec(o), want, atol=2e-2)


def test_attention_queries_exceed_keys_is_an_error():
    g = rng(2)
    q, key, value = qkv(g, 1, 1, 1, 9, 8, 4)
    lib = library(ir.select_attention_function("sa_bad", 4, 2))
    o = np.zeros((1, 1, 9, 4), np.float32)
    with pytest.raises(SparseKError) as e:
        lib.call("sa_bad", q, key, value, np.zeros((1, 1, 8), np.float32), o)
    assert e.value.code == status.QUERIES_EXCEED_KEYS


def test_decode_steps_match_full_recompute():
    g = rng(21)
    Hq, Hkv, D, k, w, steps = 4, 2, 8, 5, 3, 40
    cache = reference.DecodeCache(Hkv, k, w)
    lib = library(ir.decode_function("decode", k, w))
    keys, values, scores = [], [], []
    for t in range(steps):
        kv_k, kv_v = g.normal(size=(Hkv, D)), g.normal(size=(Hkv, D))
        sc = g.normal(size=Hkv) * (1.0 if t % 5 else 0.1)
        if t % 11 == 3:
            sc[0] = -np.inf
        cache.append(kv_k, kv_v, sc)
        keys.append(kv_k), values.append(kv_v), scores.append(sc)
        q = g.normal(size=(1, Hq, D)).astype(np.float32)
        sl = cache.slots()
        o = np.zeros((1, Hq, D), np.float32)
        lib.call("decode", q, sl.kslots[None].astype(np.float32), sl.vslots[None].astype(np.float32),
                 sl.slot_scores[None].astype(np.float32), sl.tau[None].astype(np.float32),
                 sl.pool_count[None].astype(np.int32), np.array([sl.pos], np.int64), o)
        # Full recompute: the last query of sparsek attention over the prefix.
        K = np.stack(keys, 1)[None]
        V = np.stack(values, 1)[None]
        U = np.stack(scores, 1)[None]
        want = reference.sparsek_attention(q[:, :, None], K, V, U, k, w)[:, :, 0]
        assert_output_close(o, want, V, gate_tol=1e-5)


def test_decode_batch_at_different_positions_and_bad_state():
    g = rng(22)
    Hq, Hkv, D, k, w = 2, 1, 4, 3, 2
    args, pos = decode_batch(g, (1, 7, 15), Hkv, D, k, w)
    q = g.normal(size=(3, Hq, D)).astype(np.float32)
    lib = library(ir.decode_function("decode_b", k, w))
    o = np.zeros((3, Hq, D), np.float32)
    lib.call("decode_b", q, *args, pos, o)
    want = reference.decode_attention(q, *args, pos, k, w)
    assert_output_close(o, want, args[1])
    args[4][1, 0] = k + 1  # pool count beyond the pool
    with pytest.raises(SparseKError) as e:
        lib.call("decode_b", q, *args, pos, o)
    assert e.value.code == status.INVALID_CACHE_STATE
