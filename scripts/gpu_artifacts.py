#!/usr/bin/env python3
# Builds the GPU test/bench artifacts on a machine with LLVM/MLIR and the CUDA
# toolkit (no GPU needed) with sparsek-compile --target=gpu: a shared library
# with embedded sm_90 or sm_90a kernels, linked against libsparsek_runtime.so,
# which is copied next to it.
"""Build GPU artifacts into a folder small enough to carry to the GPU machine.

    python3 scripts/gpu_artifacts.py OUT_DIR
    python3 scripts/gpu_artifacts.py --only model,matmul OUT_DIR   # those libraries alone

OUT_DIR receives libsparsek_runtime.so, libsparsek_gpu_tests.so (every
function the GPU suite calls, dynamic B, H, T, S; one per element type,
window and head dim; the composite op fused), libsparsek_gpu_decomposed.so
(the composite op decomposed), libsparsek_gpu_auto.so (default pipeline
options on sm_90a, as the Python layer compiles on H100/H200: the composite
op on the wgmma tiles; for larger rows), libsparsek_gpu_mma_sync.so (the
composite op on the tile-first mma.sync kernel), libsparsek_gpu_wgmma.so (the
same functions on the tile-first wgmma kernel, sm_90a),
libsparsek_gpu_wgmma_rows.so (the same with row-selection=true: rows of at
most 4096 candidates take the one-launch row selection),
libsparsek_gpu_decode_tiles.so (decode_attention on the tile-first split-K kernel), libsparsek_gpu_decode_tiles_mma.so
(the same functions on its tensor-core form), libsparsek_gpu_grad_tiles.so
(select_attention_grad on the tile-first mma.sync backward),
libsparsek_gpu_grad_tiles128.so (the same on 128-row tiles),
libsparsek_gpu_grad_tiles_rows.so (the same with the row selection), libsparsek_gpu_layer.so
(examples/sparsek_layer.mlir, default options on sm_90a), libsparsek_gpu_model.so
(the whole tiny transformer of examples/tiny_transformer.py as one function,
sparsek.model, default options on sm_90a) and manifest.json describing them.
--only NAME,... builds the runtime and those libraries alone (a small folder
to carry for the tests that load them), adding their keys to
OUT_DIR/manifest.json if there is one; NAME is one of tests, decomposed,
auto, mma_sync, decode_tiles, decode_tiles_mma, wgmma, wgmma128, wgmma_rows,
grad_tiles, grad_tiles128, grad_tiles_rows, matmul, layer, model (--model-only: --only model).
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

from sparsek import ir  # noqa: E402

# What the GPU suite calls: attention with explicit indices and gates.
ELEMENTS = ("f32", "bf16", "f16")
WINDOWS = (0, 3, 16, 64)
HEAD_DIMS = (64,)


def attention_name(elem, w, d):
    return f"attention_{elem}_w{w}_d{d}"


# Decode over the runtime's slot layout: (k, w) pairs the suite uses.
# (k, w) of the decode kernels: the pool filling and full, k = 0, w = 0, and
# k + w at, just past and well past the 64-slot splits of the GPU form.
DECODE_CONFIGS = ((8, 4), (64, 16), (0, 8), (16, 0), (60, 4), (100, 29))
DECODE_HEAD_DIMS = (64, 128)


def decode_name(elem, k, w, d):
    return f"decode_{elem}_k{k}_w{w}_d{d}"


# Selection (k, w) pairs: k = 0 (window only), k = 1, the common case, and a
# k large enough for k >= S at the suite's sizes.
SELECT_CONFIGS = ((8, 4), (1, 0), (16, 16), (0, 8), (256, 3))


def select_name(k, w):
    return f"select_k{k}_w{w}"


# Scoring: every optional term in f32, the plain form in the 16-bit types.
SCORE_CONFIGS = (("f32", True), ("bf16", False), ("f16", False))


def score_name(elem, full):
    return f"score_{elem}_{'full' if full else 'plain'}"


# The composite op (select + attention): (k, w) pairs; k = 256 covers k >= S.
COMPOSITE_CONFIGS = ((8, 4), (16, 16), (256, 16))


def composite_name(elem, k, w, d):
    return f"select_attention_{elem}_k{k}_w{w}_d{d}"


# The tile-first kernel (prefill-kernel=mma-sync) on what it covers: bf16 and
# f16, D = Dv in {64, 128}; (k, w) with k >= S (5000 covers T = 4097), w >= T
# for short rows, k = 0 (canonicalized to sliding-window attention, which
# keeps the loop kernel), and (128, 160): whole key tiles of Sel(t0) entries
# and whole tiles inside every query's window (the wgmma kernel's shortcuts).
MMA_ELEMENTS = ("bf16", "f16")
MMA_HEAD_DIMS = (64, 128)
MMA_CONFIGS = ((8, 4), (16, 16), (24, 100), (5000, 16), (0, 8), (128, 160))


def mma_composite_name(elem, k, w, d):
    return f"select_attention_mma_{elem}_k{k}_w{w}_d{d}"


# The composite's backward on the tile-first mma.sync kernel
# (backward-kernel=tiles), on what it covers: (element, k, w) of the tests,
# with k = 0, w = 0, lists of several key tiles and k >= S at their sizes.
GRAD_TILES_CONFIGS = (("bf16", 16, 16), ("f16", 16, 16), ("bf16", 100, 60), ("f16", 8, 4),
                      ("f16", 0, 8), ("f16", 4, 0), ("f16", 5000, 16))


def grad_tiles_name(elem, k, w, d):
    return f"select_attention_grad_tiles_{elem}_k{k}_w{w}_d{d}"


# The tile-first decode (decode-kernel=tiles) on what it covers: bf16 and
# f16, D = Dv in {64, 128}. Head counts static (one kernel per function, G
# known at compile time): (k, w, Hq, Hkv) of the loop library's pairs, caches
# long enough for several splits, and the issue's shape; one function with
# run-time head counts takes the scf.index_switch over G (its default, G > 8,
# keeps the loop kernels).
DECODE_TILES_ELEMENTS = ("bf16", "f16")
DECODE_TILES_CONFIGS = ((8, 4, 4, 2), (64, 16, 8, 2), (0, 8, 2, 2), (16, 0, 8, 1), (60, 4, 3, 3),
                        (100, 29, 16, 2), (300, 60, 12, 4), (300, 60, 32, 4), (300, 60, 4, 1),
                        (300, 60, 8, 2))
DECODE_TILES_ISSUE = (2048, 512, 32, 8, 128)
DECODE_TILES_DYNAMIC = ("bf16", 64, 16, 64)
DECODE_TILES_OPTIONS = "decode-kernel=tiles"
# The same functions on the tensor-core kernel (math=mma).
DECODE_TILES_MMA_OPTIONS = "decode-kernel=tiles-mma"


def decode_tiles_key(elem, k, w, d, hq=None, hkv=None):
    heads = "dyn" if hq is None else f"{hq}x{hkv}"
    return f"{elem}/{k}/{w}/{d}/{heads}"


def decode_tiles_functions():
    """[(manifest key, function name, kwargs of ir.decode_function)]."""
    entries = [(e, k, w, d, hq, hkv) for e in DECODE_TILES_ELEMENTS
               for k, w, hq, hkv in DECODE_TILES_CONFIGS for d in DECODE_HEAD_DIMS]
    k, w, hq, hkv, d = DECODE_TILES_ISSUE
    entries += [(e, k, w, d, hq, hkv) for e in DECODE_TILES_ELEMENTS]
    e, k, w, d = DECODE_TILES_DYNAMIC
    entries.append((e, k, w, d, None, None))
    out = []
    for e, k, w, d, hq, hkv in entries:
        key = decode_tiles_key(e, k, w, d, hq, hkv)
        name = "decode_tiles_" + key.replace("/", "_")
        out.append((key, name, dict(k=k, w=w, elem=e, head_dim=d, num_heads=hq, kv_heads=hkv)))
    return out


def wgmma_composite_name(elem, k, w, d):
    return f"select_attention_wgmma_{elem}_k{k}_w{w}_d{d}"


def wgmma128_composite_name(elem, k, w, d):
    return f"select_attention_wgmma128_{elem}_k{k}_w{w}_d{d}"


# linalg.matmul on tensor cores (sparsek-gpu-matmul-tiles): (element, K, N), None
# dynamic; K and N off the 64 / 128 tile grid, K = 12 left to the loops, the
# generation bench's projection shapes.
MATMUL_CONFIGS = (("bf16", 64, 128), ("bf16", 200, 136), ("f16", 512, 384), ("bf16", 12, 64),
                  ("bf16", None, None), ("f16", None, None), ("bf16", 2048, 2048),
                  ("bf16", 2048, 512), ("bf16", 2048, 8192))


# The default pipeline, its matmul tiles named (the library tests them).
MATMUL_OPTIONS = "chip=sm_90a matmul-tiles=true"


def matmul_name(elem, k, n):
    return f"matmul_{elem}_{k or 'dyn'}x{n or 'dyn'}"


def matmul_module():
    """C [M, N] f32 += A [M, K] @ B [K, N] per MATMUL_CONFIGS (C written in place)."""
    funcs = []
    for e, k, n in MATMUL_CONFIGS:
        a, b, c = (f"tensor<?x{k or '?'}x{e}>", f"tensor<{k or '?'}x{n or '?'}x{e}>",
                   f"tensor<?x{n or '?'}xf32>")
        funcs.append(f"func.func @{matmul_name(e, k, n)}(%a: {a}, %b: {b}, %c: {c}) -> {c} {{\n"
                     f"  %r = linalg.matmul ins(%a, %b : {a}, {b}) outs(%c : {c}) -> {c}\n"
                     f"  return %r : {c}\n}}\n")
    return ir.module(*funcs)


LAYER_SOURCE = os.path.join(ROOT, "examples", "sparsek_layer.mlir")
MODEL_FUNCTION = "sparsek_model"

# Pipeline options per library. The suite's sizes are small, so its
# selection runs in chunks of 16 candidates: a row spans many chunks and the
# chunk lists, the scan and the boundary thresholds all take part. The
# composite op is fused in the main library (the GPU pipeline's default) and
# decomposed in a second one; a third keeps every default (automatic chunk
# length, prefill-kernel=auto) for larger rows, on the chip the Python layer
# targets on H100/H200 (sparsek.gpu.default_chip), where auto takes wgmma.
# The loop kernels of decode_attention (the tile kernels have their own
# libraries below).
TEST_OPTIONS = "prefill-kernel=loops decode-kernel=loops select-chunk=16"
DECOMPOSED_OPTIONS = ("prefill-kernel=loops decode-kernel=loops fuse-select-attention=false "
                      "select-chunk=16")
MMA_OPTIONS = "prefill-kernel=mma-sync select-chunk=16"
WGMMA_OPTIONS = "prefill-kernel=wgmma chip=sm_90a select-chunk=16"
# The wgmma kernel with two warpgroups per tile (128 rows; the default is one).
WGMMA128_OPTIONS = WGMMA_OPTIONS + " tile-rows=128"
# Rows of at most 4096 candidates on the one-launch row selection (with the
# automatic chunk length; a fixed one keeps the chunked selection).
WGMMA_ROWS_OPTIONS = "prefill-kernel=wgmma chip=sm_90a row-selection=true"
DEFAULT_OPTIONS = "chip=sm_90a"
# The backward tiles of 64 rows (4 warps), and of 128 (8 warps, the default).
GRAD_TILES_OPTIONS = "backward-kernel=tiles grad-tile-rows=64 select-chunk=16"
GRAD_TILES128_OPTIONS = "backward-kernel=tiles select-chunk=16"
GRAD_TILES_ROWS_OPTIONS = "backward-kernel=tiles row-selection=true"
AUTO_SELECT_CONFIGS = ((64, 16),)
AUTO_COMPOSITE = (("f32", 64, 16), ("bf16", 64, 16))


def attention_module():
    funcs = []
    for elem in ELEMENTS:
        for w in WINDOWS:
            for d in HEAD_DIMS:
                # Static head dims: the per-query scratch lives on the GPU stack.
                funcs.append(ir.attention_function(attention_name(elem, w, d), w, elem, head_dim=d))
    for elem in ELEMENTS:
        for k, w in DECODE_CONFIGS:
            for d in DECODE_HEAD_DIMS:
                funcs.append(ir.decode_function(decode_name(elem, k, w, d), k, w, elem, head_dim=d))
    for k, w in SELECT_CONFIGS:
        funcs.append(ir.select_function(select_name(k, w), k, w))
    for elem, full in SCORE_CONFIGS:
        funcs.append(ir.score_function(score_name(elem, full), elem, bias=full, slope=full, offset=full))
    for elem in ELEMENTS:
        for k, w in COMPOSITE_CONFIGS:
            for d in HEAD_DIMS:
                funcs.append(ir.select_attention_function(composite_name(elem, k, w, d), k, w, elem,
                                                          head_dim=d))
    return ir.module(*funcs)


def composite_module():
    return ir.module(*[ir.select_attention_function(composite_name(elem, k, w, d), k, w, elem,
                                                    head_dim=d)
                       for elem in ELEMENTS for k, w in COMPOSITE_CONFIGS for d in HEAD_DIMS])


def mma_module():
    return ir.module(*[ir.select_attention_function(mma_composite_name(e, k, w, d), k, w, e, head_dim=d)
                       for e in MMA_ELEMENTS for k, w in MMA_CONFIGS for d in MMA_HEAD_DIMS])


def decode_tiles_module():
    return ir.module(*[ir.decode_function(name, **kw) for _, name, kw in decode_tiles_functions()])


def wgmma_module(name=wgmma_composite_name):
    """The mma-sync library's functions (same configurations) for the wgmma form."""
    return ir.module(*[ir.select_attention_function(name(e, k, w, d), k, w, e, head_dim=d)
                       for e in MMA_ELEMENTS for k, w in MMA_CONFIGS for d in MMA_HEAD_DIMS])


def auto_module():
    funcs = [ir.select_function(select_name(k, w), k, w) for k, w in AUTO_SELECT_CONFIGS]
    funcs += [ir.select_attention_function(composite_name(e, k, w, d), k, w, e, head_dim=d)
              for e, k, w in AUTO_COMPOSITE for d in HEAD_DIMS]
    return ir.module(*funcs)


def grad_tiles_module():
    return ir.module(*[ir.select_attention_grad_function(grad_tiles_name(e, k, w, d), k, w, e,
                                                         head_dim=d)
                       for e, k, w in GRAD_TILES_CONFIGS for d in MMA_HEAD_DIMS])


def model_config():
    """examples/tiny_transformer.py's model as a sparsek.model.ModelConfig."""
    spec = importlib.util.spec_from_file_location(
        "tiny_transformer", os.path.join(ROOT, "examples", "tiny_transformer.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example.TinyConfig().model()


def tool(name):
    """sparsek-opt from the build, LLVM's tools from LLVM 22."""
    build = os.environ.get("SPARSEK_BUILD_DIR", os.path.join(ROOT, "build"))
    for path in (os.path.join(build, "bin", name), os.path.join("/usr/lib/llvm-22/bin", name)):
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: build the project (and install LLVM 22)")
    return found


def run(cmd, stdin=None):
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
    return proc.stdout


def compile_command(src, out_so, runtime_dir, pipeline_options=""):
    """The sparsek-compile --target=gpu command line (its first six items are
    the tool, the source, -o OUT, the target and the runtime folder)."""
    cmd = [tool("sparsek-compile"), src, "-o", out_so, "--target=gpu", f"--runtime-dir={runtime_dir}"]
    if pipeline_options:
        cmd.append(f"--pipeline-options={pipeline_options}")
    return cmd


def compile_gpu_library(mlir_text, out_so, runtime_dir, pipeline_options=""):
    """sparsek-compile --target=gpu: kernels embedded, linked to the runtime."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "module.mlir")
        with open(src, "w") as f:
            f.write(mlir_text)
        run(compile_command(src, out_so, runtime_dir, pipeline_options))


def copy_runtime(out):
    """Copies the build's libsparsek_runtime.so into `out` (created), where
    the libraries compiled next to it find it; exits when it is missing."""
    os.makedirs(out, exist_ok=True)
    build = os.environ.get("SPARSEK_BUILD_DIR", os.path.join(ROOT, "build"))
    runtime = os.path.join(build, "runtime", "libsparsek_runtime.so")
    if not os.path.exists(runtime):
        sys.exit(f"{runtime} is missing: build the project with the CUDA toolkit first")
    shutil.copy2(runtime, out)


def build_model(out, manifest):
    """Compiles the tiny transformer (sparsek.model) into `out` and adds its keys to `manifest`."""
    from sparsek.model import model_module

    cfg = model_config()
    compile_gpu_library(model_module(cfg, MODEL_FUNCTION), os.path.join(out, "libsparsek_gpu_model.so"),
                        out, DEFAULT_OPTIONS)
    manifest.update({"model_library": "libsparsek_gpu_model.so",
                     "model": {"function": MODEL_FUNCTION, "config": dataclasses.asdict(cfg)}})
    manifest.setdefault("options", {})["model_library"] = DEFAULT_OPTIONS


def write_manifest(out, manifest):
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    size = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out)
               if os.path.isfile(os.path.join(out, n)))
    print(f"GPU artifacts in {out}: {size / 2**20:.1f} MiB (libraries and manifest, cache/ aside)")


def _library_table():
    """name -> (file, module builder, pipeline options, its manifest keys): every library of the
    folder but the model (build_model)."""
    mma = {f"{e}/{k}/{w}/{d}": (e, k, w, d) for e in MMA_ELEMENTS for k, w in MMA_CONFIGS
           for d in MMA_HEAD_DIMS}
    return {
        "tests": ("libsparsek_gpu_tests.so", attention_module, TEST_OPTIONS, {
            "elements": ELEMENTS, "windows": WINDOWS, "head_dims": HEAD_DIMS,
            "attention": {f"{e}/{w}/{d}": attention_name(e, w, d)
                          for e in ELEMENTS for w in WINDOWS for d in HEAD_DIMS},
            "decode": {f"{e}/{k}/{w}/{d}": decode_name(e, k, w, d)
                       for e in ELEMENTS for k, w in DECODE_CONFIGS for d in DECODE_HEAD_DIMS},
            "select": {f"{k}/{w}": select_name(k, w) for k, w in SELECT_CONFIGS},
            "score": {f"{e}/{'full' if full else 'plain'}": score_name(e, full)
                      for e, full in SCORE_CONFIGS},
            "select_attention": {f"{e}/{k}/{w}/{d}": composite_name(e, k, w, d)
                                 for e in ELEMENTS for k, w in COMPOSITE_CONFIGS
                                 for d in HEAD_DIMS}}),
        "decomposed": ("libsparsek_gpu_decomposed.so", composite_module, DECOMPOSED_OPTIONS, {}),
        "auto": ("libsparsek_gpu_auto.so", auto_module, DEFAULT_OPTIONS, {
            "auto_select": {f"{k}/{w}": select_name(k, w) for k, w in AUTO_SELECT_CONFIGS},
            "auto_select_attention": {f"{e}/{k}/{w}/{d}": composite_name(e, k, w, d)
                                      for e, k, w in AUTO_COMPOSITE for d in HEAD_DIMS}}),
        "mma_sync": ("libsparsek_gpu_mma_sync.so", mma_module, MMA_OPTIONS, {
            "mma_sync_select_attention": {key: mma_composite_name(*c) for key, c in mma.items()}}),
        "decode_tiles": ("libsparsek_gpu_decode_tiles.so", decode_tiles_module,
                         DECODE_TILES_OPTIONS, {
                             "decode_tiles": {key: name for key, name, _ in decode_tiles_functions()}}),
        "decode_tiles_mma": ("libsparsek_gpu_decode_tiles_mma.so", decode_tiles_module,
                             DECODE_TILES_MMA_OPTIONS, {}),
        "wgmma": ("libsparsek_gpu_wgmma.so", wgmma_module, WGMMA_OPTIONS, {
            "wgmma_select_attention": {key: wgmma_composite_name(*c) for key, c in mma.items()}}),
        "wgmma128": ("libsparsek_gpu_wgmma128.so", lambda: wgmma_module(wgmma128_composite_name),
                     WGMMA128_OPTIONS, {
                         "wgmma128_select_attention": {key: wgmma128_composite_name(*c)
                                                       for key, c in mma.items()}}),
        "wgmma_rows": ("libsparsek_gpu_wgmma_rows.so", wgmma_module, WGMMA_ROWS_OPTIONS, {
            "wgmma_rows_select_attention": {key: wgmma_composite_name(*c)
                                            for key, c in mma.items()}}),
        "grad_tiles": ("libsparsek_gpu_grad_tiles.so", grad_tiles_module, GRAD_TILES_OPTIONS, {
            "grad_tiles": {f"{e}/{k}/{w}/{d}": grad_tiles_name(e, k, w, d)
                           for e, k, w in GRAD_TILES_CONFIGS for d in MMA_HEAD_DIMS}}),
        "grad_tiles128": ("libsparsek_gpu_grad_tiles128.so", grad_tiles_module,
                          GRAD_TILES128_OPTIONS, {}),
        "grad_tiles_rows": ("libsparsek_gpu_grad_tiles_rows.so", grad_tiles_module,
                            GRAD_TILES_ROWS_OPTIONS, {
                                "grad_tiles": {f"{e}/{k}/{w}/{d}": grad_tiles_name(e, k, w, d)
                                               for e, k, w in GRAD_TILES_CONFIGS
                                               for d in MMA_HEAD_DIMS}}),
        "matmul": ("libsparsek_gpu_matmul.so", matmul_module, MATMUL_OPTIONS, {
            "matmul": {f"{e}/{k}/{n}": matmul_name(e, k, n) for e, k, n in MATMUL_CONFIGS}}),
        # The example layer as written (linalg projections, score, composite op).
        "layer": ("libsparsek_gpu_layer.so", lambda: open(LAYER_SOURCE).read(), DEFAULT_OPTIONS,
                  {"layer": "sparsek_layer"}),
    }


def _manifest_key(name):
    """The manifest key naming library `name`'s file ("library" for the main one)."""
    return "library" if name == "tests" else f"{name}_library"


LIBRARIES = tuple(_library_table()) + ("model",)


def main():
    p = argparse.ArgumentParser(usage=__doc__)
    p.add_argument("out")
    p.add_argument("--only", type=lambda v: v.split(","), help="comma-separated libraries")
    p.add_argument("--model-only", action="store_true", help="--only model")
    args = p.parse_args()
    only = ["model"] if args.model_only else args.only
    unknown = sorted(set(only or ()) - set(LIBRARIES))
    if unknown:
        p.error(f"unknown libraries {', '.join(unknown)}; choose from {', '.join(LIBRARIES)}")
    out = os.path.abspath(args.out)
    copy_runtime(out)
    manifest = {}
    path = os.path.join(out, "manifest.json")
    if only is not None and os.path.exists(path):   # a part of the folder: keep the rest's keys
        with open(path) as f:
            manifest = json.load(f)
    for name, (file, module, options, keys) in _library_table().items():
        if only is not None and name not in only:
            continue
        compile_gpu_library(module(), os.path.join(out, file), out, options)
        manifest[_manifest_key(name)] = file
        manifest.setdefault("options", {})[_manifest_key(name)] = options
        manifest.update(keys)
    if only is None or "model" in only:
        build_model(out, manifest)
    write_manifest(out, manifest)


if __name__ == "__main__":
    main()
