# SparseKAttention configurations of test_gpu_nn.py (no torch needed): scripts/prebuild_gpu_layers.py
# compiles their CPU and GPU libraries ahead, into the cache folder carried to the GPU machine.
"""Keyword arguments of SparseKAttention (dtype as a string) for the GPU tests."""

CONFIGS = {
    # G = 2, bias and slope; k + w small enough that decoding evicts from the pool.
    "f32": dict(embed_dim=64, num_heads=4, num_kv_heads=2, k=8, w=4, score_slope=True),
    # k = 0 (window only), G = 4, no score bias, head_dim given.
    "f32_window": dict(embed_dim=32, num_heads=4, num_kv_heads=1, head_dim=16, k=0, w=6,
                       score_bias=False),
    "bf16": dict(embed_dim=64, num_heads=4, num_kv_heads=2, k=8, w=4, dtype="bf16"),
    # A production head: D = 128, G = 4 (on sm_90a the wgmma prefill tiles and the D = 128
    # decode tiles), bf16, with bias and slope; k + w = 96 so that a 100-token prompt evicts.
    "bf16_d128": dict(embed_dim=512, num_heads=4, num_kv_heads=1, head_dim=128, k=64, w=32,
                      score_slope=True, dtype="bf16"),
    # The slice of "f32" that each of 2 tensor-parallel ranks holds (test_gpu_parallel.py).
    "f32_tp2": dict(embed_dim=64, num_heads=2, num_kv_heads=1, head_dim=16, k=8, w=4, score_slope=True),
}


# The LayerConfig fields of test_gpu_parallel.py's context-parallel prefill (2 GPUs).
CONTEXT_PARALLEL = dict(C=32, Hq=4, Hkv=2, D=8, k=5, w=4, bias=True, slope=True)


def layer_config(name):
    from sparsek.layer import attention_config

    return attention_config(**CONFIGS[name])
