# The MLIR modules behind sparsek.autograd (forward and gradient ops of the composite and of scoring), without torch: prebuilt for GPU machines that have no compiler.
"""Modules of sparsek.autograd's compiled libraries.

Each library holds a `forward` and a `backward` function. The GPU ones (CUDA
tensors) have static head dimensions D = Dv, which the GPU lowering needs.
`prebuild_cuda` compiles them into the compiler's disk cache (no GPU needed),
which a GPU machine without LLVM then serves (scripts/prebuild_gpu_layers.py).
"""

from . import ir


def attention_module(k, w, scale, elem, head_dim=None):
    """select_attention and select_attention_grad; static D = Dv when head_dim is given."""
    return ir.module(
        ir.select_attention_function("forward", k, w, elem=elem, scale=scale, head_dim=head_dim),
        ir.select_attention_grad_function("backward", k, w, elem=elem, scale=scale,
                                          head_dim=head_dim))


def score_module(bias, slope, elem):
    """score (with an offset operand) and score_grad."""
    return ir.module(ir.score_function("forward", elem=elem, bias=bias, slope=slope, offset=True),
                     ir.score_grad_function("backward", elem=elem, offset=True))


def prebuild_cuda(k, w, head_dim, elem="f32", scale=None, bias=True, slope=False):
    """Compiles the GPU libraries that CUDA tensors of these settings load into the compiler's
    disk cache and returns their paths."""
    from . import gpu

    return [gpu.compile(attention_module(int(k), int(w), scale, elem, int(head_dim))),
            gpu.compile(score_module(bool(bias), bool(slope), elem))]
