# Settings of test_gpu_grad.py (no torch needed): scripts/prebuild_gpu_layers.py compiles their GPU
# gradient libraries (sparsek.autograd.prebuild_cuda) into the cache folder carried to the GPU machine.
"""(B, Hq, Hkv, S, T, k, w, D, score kind) of the composite's gradient tests on CUDA, and the
SparseKAttention modules trained there (keyword arguments, dtype as a string)."""

# The CPU matrix of test_cpu_grad.py at GPU head dims, plus rows long enough for several
# selection chunks and scan chunks (256 queries), and GQA with S > T.
COMPOSITE = [
    (1, 2, 2, 24, 24, 4, 3, 64, "spread"),
    (1, 2, 2, 24, 24, 4, 3, 64, "narrow"),     # support entries truncated out of Sel(t)
    (2, 4, 2, 20, 20, 3, 2, 64, "ties"),
    (1, 4, 1, 30, 30, 6, 4, 64, "masked"),     # -inf scores, G = 4
    (1, 2, 1, 28, 12, 5, 4, 64, "narrow"),     # S > T
    (1, 2, 2, 16, 16, 0, 4, 64, "spread"),     # k = 0
    (1, 2, 1, 16, 16, 20, 3, 64, "narrow"),    # k >= S
    (1, 2, 2, 12, 12, 3, 20, 64, "narrow"),    # w >= T
    (1, 2, 2, 20, 20, 4, 0, 64, "narrow"),     # w = 0
    (2, 8, 2, 1100, 1000, 64, 32, 64, "narrow"),
    (1, 4, 2, 700, 700, 24, 16, 128, "spread"),
]

ELEMENTS = ("f32", "bf16")

# SparseKAttention modules trained on CUDA (the same settings as the CPU's autograd tests).
MODULES = {
    "small": dict(embed_dim=16, num_heads=4, num_kv_heads=2, k=3, w=2, score_slope=True),
    "bf16": dict(embed_dim=256, num_heads=4, num_kv_heads=2, k=8, w=4, dtype="bf16"),  # D = 64
}


def prebuild_settings():
    """(k, w, head_dim, elem, bias, slope) of every GPU gradient library the tests load."""
    from sparsek.layer import attention_config

    out = {(k, w, d, e, True, False) for (_, _, _, _, _, k, w, d, _) in COMPOSITE for e in ELEMENTS}
    # test_gpu_torch_compile.py also runs nn_configs' "f32" module eagerly with
    # gradients enabled, which loads its gradient library.
    from nn_configs import CONFIGS

    for opts in [*MODULES.values(), CONFIGS["f32"]]:
        cfg = attention_config(**opts)
        out.add((cfg.k, cfg.w, cfg.D, cfg.dtype, cfg.bias, cfg.slope))
    return sorted(out)
