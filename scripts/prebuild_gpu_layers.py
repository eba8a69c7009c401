#!/usr/bin/env python3
# Compiles the SparseK layers that SparseKAttention's GPU tests, examples/tiny_transformer.py and
# bench/generation.py run (CPU and GPU libraries) into a compiler cache folder, carried to the GPU machine, which has no LLVM.
"""Prebuild the layer libraries of the GPU suite into a cache folder.

    python3 scripts/prebuild_gpu_layers.py [--prune] [--parts A,B] CACHE_DIR   # e.g. build/gpu-artifacts/cache

--prune then deletes the folder's other libraries (sparsek_*.so: those of
earlier compiler builds or chips, or of the parts left out), so that the
carried folder stays small. --parts builds only those parts (default: all):
tiny (examples/tiny_transformer.py), nn (SparseKAttention's test
configurations), parallel, varlen, grad, train (examples/train_tiny.py) and
generation (bench/generation.py's layer).

On the GPU machine, SPARSEK_CACHE_DIR=CACHE_DIR and SPARSEK_RUNTIME_LIB=<the
runtime of the same build> make `sparsek.compiler.compile` serve these
libraries (python/test/gpu/conftest.py sets both from the artifact folder).
Needs the compiler and libsparsek_runtime.so built with CUDA; no GPU.

The GPU libraries target sm_90a (SPARSEK_GPU_CHIP, unless set otherwise), the
chip sparsek.gpu.default_pipeline() picks on the GPU machine's H100 or H200,
so their kernels are the defaults users get there (wgmma prefill) and the
cache keys match.
"""

import argparse
import glob
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "python", "test", "gpu"))


def _script(path):
    """The Python file at `path` (relative to the repository) as a module."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny(folder):   # examples/tiny_transformer.py (test_gpu_tiny_transformer.py, test_gpu_model.py)
    return _script("examples/tiny_transformer.py").prebuild(folder)


def _nn(folder):   # SparseKAttention's configurations (test_gpu_nn.py, test_gpu_torch_compile.py, ...)
    from nn_configs import CONFIGS, layer_config
    from sparsek.compiled_layer import CompiledLayer

    return [p for name in CONFIGS for p in CompiledLayer(layer_config(name)).prebuild()]


def _parallel(folder):   # sparsek.parallel.context_parallel_prefill (test_gpu_parallel.py)
    from nn_configs import CONTEXT_PARALLEL
    from sparsek import compiler, gpu
    from sparsek.layer import LayerConfig, context_parallel_module, layer_module

    cp = LayerConfig(**CONTEXT_PARALLEL)
    text = context_parallel_module(cp)
    return [compiler.compile(text), gpu.compile(text),
            compiler.compile(layer_module(cp, decode=False))]   # the single-process baseline


def _varlen(folder):
    """sparsek.varlen's libraries (test_gpu_varlen.py): the padded GPU form, each sequence
    alone, the CPU reference, and the module tests' layers."""
    from sparsek import compiler
    from varlen_configs import module_libraries, modules

    return [compiler.compile(text, pipeline=pipeline) for text, pipeline in modules()] + \
        module_libraries()


def _grad(folder):   # sparsek.autograd's GPU gradients and their forward layers (test_gpu_grad.py)
    from grad_configs import MODULES, prebuild_settings
    from sparsek import grad_libraries
    from sparsek.compiled_layer import CompiledLayer
    from sparsek.layer import attention_config

    paths = []
    for k, w, d, elem, bias, slope in prebuild_settings():
        paths += grad_libraries.prebuild_cuda(k, w, d, elem, bias=bias, slope=slope)
    for opts in MODULES.values():
        paths += CompiledLayer(attention_config(**opts)).prebuild()
    return paths


def _train(folder):   # examples/train_tiny.py --device cuda (its default settings)
    train_tiny = _script("examples/train_tiny.py")
    return train_tiny.prebuild_cuda(folder, train_tiny.parse_args([]))


def _generation(folder):   # bench/generation.py's SparseK layer (its default model; GPU only)
    from sparsek.compiled_layer import CompiledLayer

    generation = _script("bench/generation.py")
    return CompiledLayer(generation.layer_config(generation.parse_args([]))).prebuild(cpu=False)


PARTS = {"tiny": _tiny, "nn": _nn, "parallel": _parallel, "varlen": _varlen, "grad": _grad,
         "train": _train, "generation": _generation}


def main():
    p = argparse.ArgumentParser(usage=__doc__)
    p.add_argument("folder")
    p.add_argument("--prune", action="store_true")
    p.add_argument("--parts", type=lambda v: v.split(","), default=list(PARTS))
    args = p.parse_args()
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        p.error(f"unknown parts {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    folder = os.path.abspath(args.folder)
    os.makedirs(folder, exist_ok=True)
    os.environ["SPARSEK_CACHE_DIR"] = folder
    os.environ.setdefault("SPARSEK_GPU_CHIP", "sm_90a")
    paths = []
    for part in args.parts:
        paths += PARTS[part](folder)
    size = sum(os.path.getsize(p) for p in set(paths))
    print(f"{len(set(paths))} layer libraries in {folder}: {size / 2**20:.1f} MiB")
    if args.prune:
        keep = {os.path.abspath(p) for p in paths}
        stale = [p for p in glob.glob(os.path.join(folder, "sparsek_*.so")) if p not in keep]
        for path in stale:
            os.remove(path)
        print(f"pruned {len(stale)} other libraries from {folder}")


if __name__ == "__main__":
    main()
