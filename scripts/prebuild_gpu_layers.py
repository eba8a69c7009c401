#!/usr/bin/env python3
# Compiles the SparseK layers that SparseKAttention's GPU tests, examples/tiny_transformer.py and
# bench/generation.py run (CPU and GPU libraries) into a compiler cache folder, carried to the GPU machine, which has no LLVM.
"""Prebuild the layer libraries of the GPU suite into a cache folder.

    python3 scripts/prebuild_gpu_layers.py [--prune] CACHE_DIR   # e.g. build/gpu-artifacts/cache

--prune then deletes the folder's other libraries (sparsek_*.so: those of
earlier compiler builds or chips), so that the carried folder stays small.

On the GPU machine, SPARSEK_CACHE_DIR=CACHE_DIR and SPARSEK_RUNTIME_LIB=<the
runtime of the same build> make `sparsek.compiler.compile` serve these
libraries (python/test/gpu/conftest.py sets both from the artifact folder).
Needs the compiler and libsparsek_runtime.so built with CUDA; no GPU.

The GPU libraries target sm_90a (SPARSEK_GPU_CHIP, unless set otherwise), the
chip sparsek.gpu.default_pipeline() picks on the GPU machine's H100 or H200,
so their kernels are the defaults users get there (wgmma prefill) and the
cache keys match.
"""

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


def main():
    args = sys.argv[1:]
    prune = "--prune" in args
    args = [a for a in args if a != "--prune"]
    if len(args) != 1:
        sys.exit(__doc__)
    folder = os.path.abspath(args[0])
    os.makedirs(folder, exist_ok=True)
    os.environ["SPARSEK_CACHE_DIR"] = folder
    os.environ.setdefault("SPARSEK_GPU_CHIP", "sm_90a")
    from nn_configs import CONFIGS, CONTEXT_PARALLEL, layer_config
    from sparsek import compiler, gpu
    from sparsek.compiled_layer import CompiledLayer
    from sparsek.layer import LayerConfig, attention_config, context_parallel_module, layer_module

    paths = _script("examples/tiny_transformer.py").prebuild(folder)
    for name in CONFIGS:
        paths += CompiledLayer(layer_config(name)).prebuild()
    # sparsek.parallel.context_parallel_prefill's libraries (test_gpu_parallel.py).
    cp = LayerConfig(**CONTEXT_PARALLEL)
    text = context_parallel_module(cp)
    paths += [compiler.compile(text), gpu.compile(text),
              compiler.compile(layer_module(cp, decode=False))]   # the single-process baseline
    # sparsek.varlen's libraries (test_gpu_varlen.py): the padded GPU form, each sequence
    # alone, the CPU reference.
    from varlen_configs import module_libraries, modules as varlen_modules

    paths += [compiler.compile(text, pipeline=pipeline) for text, pipeline in varlen_modules()]
    paths += module_libraries()
    # sparsek.autograd's GPU gradient libraries (test_gpu_grad.py).
    from grad_configs import MODULES, prebuild_settings
    from sparsek import grad_libraries

    for k, w, d, elem, bias, slope in prebuild_settings():
        paths += grad_libraries.prebuild_cuda(k, w, d, elem, bias=bias, slope=slope)
    for opts in MODULES.values():   # their forward (the layer) on the GPU
        paths += CompiledLayer(attention_config(**opts)).prebuild()
    # examples/train_tiny.py --device cuda (its default settings).
    train_tiny = _script("examples/train_tiny.py")
    paths += train_tiny.prebuild_cuda(folder, train_tiny.parse_args([]))
    # bench/generation.py's SparseK layer (its default model; GPU only).
    generation = _script("bench/generation.py")
    paths += CompiledLayer(generation.layer_config(generation.parse_args([]))).prebuild(cpu=False)
    size = sum(os.path.getsize(p) for p in set(paths))
    print(f"{len(set(paths))} layer libraries in {folder}: {size / 2**20:.1f} MiB")
    if prune:
        keep = {os.path.abspath(p) for p in paths}
        stale = [p for p in glob.glob(os.path.join(folder, "sparsek_*.so")) if p not in keep]
        for path in stale:
            os.remove(path)
        print(f"pruned {len(stale)} other libraries from {folder}")


if __name__ == "__main__":
    main()
