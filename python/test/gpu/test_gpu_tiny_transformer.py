# examples/tiny_transformer.py on the GPU (SparseKAttention over compiled GPU kernels and a CUDA
# KV cache) against its CPU path on the same tokens and the float64 reference.
import numpy as np

from gpu_checks import load_example


def test_gpu_generation_matches_cpu_and_reference(torch, layer_cache):
    ex = load_example()
    cfg = ex.TinyConfig()
    weights = ex.init_weights(cfg, seed=3)
    prompt = [1, 5, 9, 2, 7, 3, 11, 4]
    tokens, gpu_logits, cpu_logits, cpu_choices = ex.compare_devices(cfg, weights, prompt, steps=24)
    assert len(tokens) == len(prompt) + 24 and len(tokens) > 2 * (cfg.k + cfg.w)
    # Greedy on the GPU's own logits; the CPU path picks the same tokens.
    assert tokens[len(prompt):] == [int(np.argmax(r)) for r in gpu_logits[len(prompt) - 1:]]
    assert cpu_choices == tokens[len(prompt):]
    diff = ex.logits_error(gpu_logits, cpu_logits)
    print(f"GPU vs CPU logits: max rel difference {diff:.2e}")
    assert diff <= 1e-4
    assert ex.logits_error(gpu_logits, ex.reference_logits(cfg, weights, tokens)[:-1]) <= 1e-4
