# The whole tiny transformer compiled as one GPU library (sparsek.model) against the float64
# model of examples/tiny_transformer.py and the same model in torch eager on CUDA.
import numpy as np
import pytest

from gpu_checks import load_example


def example_for(model):
    """The example module and its config, which the artifact was compiled from."""
    ex = load_example()
    cfg = ex.TinyConfig()
    assert cfg.model() == model.cfg, "the artifact's model is not examples/tiny_transformer.py's"
    return ex, cfg


# T = 1; T past k + w = 10 and a multiple of no tile (selection decides); B > 1.
SHAPES = [(1, 1), (2, 23), (3, 77), (1, 300)]


@pytest.mark.parametrize("B,T", SHAPES)
def test_logits_match_the_float64_model(torch, gpu_model, B, T):
    ex, cfg = example_for(gpu_model)
    weights = ex.init_weights(cfg, seed=T)
    tokens = np.random.default_rng(T).integers(0, cfg.vocab, size=(B, T))
    got = gpu_model(torch.from_numpy(tokens).cuda(), weights)
    assert got.is_cuda and got.dtype == torch.float32 and tuple(got.shape) == (B, T, cfg.vocab)
    got = got.cpu().numpy()
    # SPEC 8, GPU f32 against float64: 1e-4 of the logits' scale. u is computed by other
    # code than the reference's, so selections could differ between near-equal scores;
    # these seeds keep them apart.
    for b in range(B):
        assert ex.logits_error(got[b], ex.reference_logits(cfg, weights, tokens[b])) < 1e-4


@pytest.mark.parametrize("B,T", [(2, 23), (1, 77)])
def test_logits_match_torch_eager_on_cuda(torch, gpu_model, layer_cache, B, T):
    """The example's torch module on CUDA (SparseKAttention over its compiled GPU layer, torch
    for the rest), run as one forward over the whole prompt."""
    ex, cfg = example_for(gpu_model)
    weights = ex.init_weights(cfg, seed=B + T)
    tokens = torch.from_numpy(np.random.default_rng(B + T).integers(0, cfg.vocab, size=(B, T))).cuda()
    net = ex.torch_model(cfg, weights, "cuda")

    def rms(x, g):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g
    with torch.no_grad():
        h = net.emb[tokens]
        for blk in net.blocks:
            h = h + blk.attn(rms(h, blk.norm1))
            h = h + blk.mlp(rms(h, blk.norm2))
        want = net.logits(h)
    got = gpu_model(tokens, gpu_model.weights(weights))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_host_and_device_tokens_agree_and_bad_tokens_are_refused(torch, gpu_model):
    ex, cfg = example_for(gpu_model)
    weights = gpu_model.weights(ex.init_weights(cfg, seed=5))
    tokens = np.random.default_rng(5).integers(0, cfg.vocab, size=(2, 13))
    torch.testing.assert_close(gpu_model(tokens, weights),
                               gpu_model(torch.from_numpy(tokens).int().cuda(), weights))
    with pytest.raises(ValueError, match="tokens must lie"):
        gpu_model(torch.tensor([[0, cfg.vocab]], device="cuda"), weights)
    with pytest.raises(ValueError, match="integer"):
        gpu_model(torch.zeros((1, 3), device="cuda"), weights)
