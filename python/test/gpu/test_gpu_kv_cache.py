# The runtime's CUDA KV cache (KVCache backend="cuda") against reference.DecodeCache, on torch CUDA tensors.
import pytest

from runtime_harness import assert_matches_reference
from sparsek import reference
from sparsek.kv_cache import INVALID_SCORE, CacheView, KVCache, RuntimeCacheError


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_cuda_backend_matches_reference(dtype, torch, layer_cache):
    g = torch.Generator().manual_seed(5)
    H, D, k, w, T = 2, 8, 4, 3, 30
    tdt = torch.float32 if dtype == "f32" else torch.bfloat16
    with KVCache(1, H, k, w, D, dtype=dtype, max_seqs=3, backend="cuda") as cache:
        seqs = [cache.alloc_seq() for _ in range(2)]
        refs = [reference.DecodeCache(H, k, w) for _ in seqs]
        for t in range(T):
            keys = torch.randn(2, H, D, generator=g).to(tdt)
            values = torch.randn(2, H, D, generator=g).to(tdt)
            scores = torch.randn(2, H, generator=g)
            cache.append(0, seqs, keys.cuda(), values.cuda(), scores.cuda())
            for b, ref in enumerate(refs):
                ref.append(keys[b].double().numpy(), values[b].double().numpy(), scores[b].double().numpy())
        cache.check_device_error()
        tv = cache.torch_view(0)
        assert tv.k_slots.is_cuda
        host = CacheView(*(a.cpu().float().numpy() if a.is_floating_point() else a.cpu().numpy() for a in tv))
        for seq, ref in zip(seqs, refs):
            assert_matches_reference(host, seq, ref)
        bad = torch.full((1, H), float("nan"), device="cuda")
        cache.append(0, [seqs[0]], keys[:1].cuda(), values[:1].cuda(), bad)
        with pytest.raises(RuntimeCacheError) as e:
            cache.check_device_error()
        assert e.value.status == INVALID_SCORE
        with pytest.raises(TypeError, match="CUDA tensors"):
            cache.append(0, [seqs[0]], keys[:1].float().numpy(), values[:1].float().numpy(), scores[:1].numpy())
