# KVCache (the runtime through ctypes) against reference.DecodeCache: slots, tau, errors as exceptions.
import numpy as np
import pytest

from runtime_harness import assert_matches_reference, require_runtime
from sparsek import reference
from sparsek.kv_cache import (BAD_HANDLE, INVALID_ARGUMENT, INVALID_SCORE, NO_DEVICE, OUT_OF_SLOTS, UNSUPPORTED,
                              KVCache, RuntimeCacheError, cuda_available)


@pytest.fixture(autouse=True)
def _runtime():
    require_runtime()


@pytest.mark.parametrize("k,w", [(4, 3), (0, 5), (6, 0)])
def test_token_appends_match_reference(k, w):
    g = np.random.default_rng(k * 10 + w)
    H, D = 2, 4
    with KVCache(2, H, k, w, D, max_seqs=3) as cache:
        seqs = [cache.alloc_seq() for _ in range(2)]
        refs = [reference.DecodeCache(H, k, w) for _ in seqs]
        for t in range(40):
            keys = g.normal(size=(2, H, D)).astype(np.float32)
            values = g.normal(size=(2, H, D)).astype(np.float32)
            scores = g.normal(size=(2, H)).astype(np.float32)
            if t % 7 == 2:
                scores[0, 1] = -np.inf  # masked: never a candidate
            cache.append(1, seqs, keys, values, scores)
            for b, ref in enumerate(refs):
                ref.append(keys[b], values[b], scores[b])
        view = cache.view(1)
        for seq, ref in zip(seqs, refs):
            assert_matches_reference(view, seq, ref)
        assert (cache.view(0).pos == -1).all()  # the other layer is untouched
        assert not cache.is_approximate(seqs[0])


def test_chunk_equals_token_appends_and_views_alias():
    g = np.random.default_rng(3)
    H, D, T, k, w = 2, 8, 33, 5, 4
    keys, values = g.normal(size=(H, T, D)), g.normal(size=(H, T, D))
    scores = g.normal(size=(H, T))
    with KVCache(1, H, k, w, D, max_seqs=1) as cache:
        seq = cache.alloc_seq()
        view = cache.view(0)
        assert view.pos[seq] == -1
        cache.append_chunk(0, seq, keys, values, scores)
        ref = reference.DecodeCache(H, k, w)
        for t in range(T):
            ref.append(keys[:, t], values[:, t], scores[:, t])
        assert_matches_reference(view, seq, ref)  # the view taken before shows the append


def test_bf16_cache_stores_bit_patterns():
    from sparsek.memref import from_bf16_bits, to_bf16_bits
    g = np.random.default_rng(4)
    keys = g.normal(size=(1, 1, 4)).astype(np.float32)
    with KVCache(1, 1, 2, 2, 4, dtype="bf16") as cache:
        seq = cache.alloc_seq()
        cache.append(0, [seq], keys, keys, np.zeros((1, 1), np.float32))
        view = cache.view(0)
        assert view.k_slots.dtype == np.uint16
        np.testing.assert_array_equal(view.k_slots[seq, 0, 2], to_bf16_bits(keys[0, 0]))
        np.testing.assert_allclose(from_bf16_bits(view.k_slots[seq, 0, 2]), keys[0, 0], rtol=1e-2)


def test_errors_carry_the_runtime_message():
    with KVCache(1, 2, 3, 2, 4, max_seqs=1) as cache:
        seq = cache.alloc_seq()
        with pytest.raises(RuntimeCacheError, match="NaN") as e:
            cache.append(0, [seq], np.zeros((1, 2, 4)), np.zeros((1, 2, 4)), [[np.nan, 0.0]])
        assert e.value.status == INVALID_SCORE
        assert cache.view(0).pos[seq] == -1  # nothing changed
        with pytest.raises(RuntimeCacheError) as e:
            cache.alloc_seq()
        assert e.value.status == OUT_OF_SLOTS
        with pytest.raises(RuntimeCacheError, match="not allocated") as e:
            cache.free_seq(5)
        assert e.value.status == BAD_HANDLE
        with pytest.raises(ValueError, match=r"keys: expected shape \(1, 2, 4\)"):
            cache.append(0, [seq], np.zeros((1, 2, 5)), np.zeros((1, 2, 4)), np.zeros((1, 2)))
        cache.free_seq(seq)
        assert cache.alloc_seq() == seq
    with pytest.raises(RuntimeCacheError) as e:
        KVCache(1, 2, -1, 2, 4)
    assert e.value.status == INVALID_ARGUMENT
    with pytest.raises(ValueError, match="backend"):
        KVCache(1, 2, 3, 2, 4, backend="tpu")


def test_closed_cache_is_an_error():
    cache = KVCache(1, 1, 1, 1, 4)
    cache.close()
    with pytest.raises(ValueError, match="closed"):
        cache.alloc_seq()


def test_views_keep_their_memory_after_close():
    # A view used to outlive close(): the freed slots went to the next cache,
    # and writing through the stale view changed that cache's state.
    shape = (1, 2, 3, 2, 8)
    old = KVCache(*shape, max_seqs=2)
    seq = old.alloc_seq()
    old.append(0, [seq], np.ones((1, 2, 8)), np.ones((1, 2, 8)), np.ones((1, 2)))
    stale = old.view(0)
    old.close()
    with pytest.raises(ValueError, match="closed"):
        old.view(0)
    assert stale.pos[seq] == 0 and (stale.k_slots[seq, :, 3] == 1).all()  # still the old cache's data
    with KVCache(*shape, max_seqs=2) as new:
        fresh = new.view(0)
        for a in stale:
            a[...] = 7
        assert (fresh.pos == -1).all() and (fresh.pool_count == 0).all()
        assert not (fresh.k_slots == 7).any() and not (fresh.slot_pos == 7).any()
        seq = new.alloc_seq()
        new.append(0, [seq], np.zeros((1, 2, 8)), np.zeros((1, 2, 8)), np.zeros((1, 2)))
        assert fresh.pos[seq] == 0
    del stale
    import gc
    gc.collect()


def test_f16_cache_view():
    g = np.random.default_rng(6)
    keys = g.normal(size=(1, 1, 4)).astype(np.float16)
    values = g.normal(size=(1, 1, 4)).astype(np.float16)
    with KVCache(1, 1, 2, 2, 4, dtype="f16") as cache:
        seq = cache.alloc_seq()
        cache.append(0, [seq], keys, values, np.zeros((1, 1), np.float32))
        view = cache.view(0)
        assert view.k_slots.dtype == np.float16 and view.k_slots.shape == (1, 1, 4, 4)
        np.testing.assert_array_equal(view.k_slots[seq, 0, 2], keys[0, 0])
        np.testing.assert_array_equal(view.v_slots[seq, 0, 2], values[0, 0])
        assert view.pos[seq] == 0 and view.slot_pos[seq, 0, 2] == 0


def test_cuda_backend_without_a_gpu_is_an_error():
    if cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeCacheError) as e:
        KVCache(1, 2, 3, 2, 4, backend="cuda")
    assert e.value.status in (NO_DEVICE, UNSUPPORTED)


def test_torch_view_shares_the_cpu_slots():
    torch = pytest.importorskip("torch")
    with KVCache(1, 1, 2, 2, 4, dtype="bf16") as cache:
        seq = cache.alloc_seq()
        keys = torch.randn(1, 1, 4)
        cache.append(0, [seq], keys.numpy(), keys.numpy(), np.ones((1, 1), np.float32))
        tv = cache.torch_view(0)
        assert tv.k_slots.dtype == torch.bfloat16 and tv.pos[seq] == 0
        assert torch.equal(tv.k_slots[seq, 0, 2], keys[0, 0].to(torch.bfloat16))
        cache.append(0, [seq], keys.numpy(), keys.numpy(), np.ones((1, 1), np.float32))
        assert tv.pos[seq] == 1  # a view, not a copy
