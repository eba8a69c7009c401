# What the GPU varlen tests compile (test_gpu_varlen.py), shared with scripts/prebuild_gpu_layers.py,
# which builds these libraries into the carried cache (the GPU machine has no compiler).
from sparsek import gpu, ir, varlen

# (k, w, element type, D = Dv): bf16/f16 with D in {64, 128} take the tile-first kernel
# (wgmma on sm_90a, the default pipeline's chip on Hopper); f32 keeps the loop kernels.
CONFIGS = [(64, 32, elem, d) for elem in ("bf16", "f16") for d in (64, 128)] + [(16, 8, "f32", 64)]


def modules():
    """(text, pipeline) of every library the tests load."""
    out, pipeline = [], gpu.default_pipeline()
    for k, w, elem, d in CONFIGS:
        out.append((varlen.padded_module(k, w, elem, None, d, d), pipeline))
        # Each sequence alone through the ordinary (non-varlen) op on the GPU.
        out.append((per_sequence_module(k, w, elem, d), pipeline))
        # The float32 CPU loop form on the same rounded inputs: the reference.
        out.append((varlen.loop_module(k, w, "f32"), "sparsek-cpu-pipeline"))
    return out


def per_sequence_module(k, w, elem, d):
    return ir.module(ir.select_attention_function("sa", k, w, elem, head_dim=d))


# SparseKAttention configurations of the varlen prefill tests: nn_configs' "f32" and "bf16"
# (D = 16: the loop kernels) and one on the tile-first kernel (bf16, D = 64).
MODULES = {
    "f32": None,
    "bf16": None,
    "bf16_d64": dict(embed_dim=256, num_heads=4, num_kv_heads=2, head_dim=64, k=64, w=32,
                     dtype="bf16", score_slope=True),
}


def module_options(name):
    from nn_configs import CONFIGS

    return dict(MODULES[name] or CONFIGS[name])


def module_libraries():
    """Paths of every library the module tests load (CPU and GPU): varlen.Layer and the
    ordinary layer (per-prompt prefill, decode) of each configuration."""
    from sparsek.compiled_layer import CompiledLayer
    from sparsek.layer import attention_config

    paths = []
    for name in MODULES:
        cfg = attention_config(**module_options(name))
        paths += varlen.Layer(cfg).prebuild() + CompiledLayer(cfg).prebuild()
    return paths
