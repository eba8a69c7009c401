#!/usr/bin/env python3
# Builds the compiled functions the GPU benchmark calls (bench/gpu_bench.py)
# with `sparsek-compile --target=gpu`, one library per op family, so that an
# op the GPU pipeline does not lower yet is recorded as unavailable instead of
# breaking the whole build.
"""Build bench artifacts (no GPU needed):

    python3 bench/build_bench_artifacts.py OUT_DIR [--families A,B] [--options "..."]

--families builds only those families; --options appends GPU pipeline options
to every family's (an A/B variant, e.g. "tile-rows=128").

OUT_DIR receives libsparsek_runtime.so, one shared library per family below
and manifest.json: for each family the library, the function names, the GPU
pipeline options it was compiled with (and the command), or the compiler's
error when the GPU pipeline rejected it.
"""

import argparse
import hashlib
import inspect
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from gpu_artifacts import compile_command, copy_runtime  # noqa: E402
from sparsek import ir  # noqa: E402

# Workloads (BENCHMARKS.md): P1/D1/S1 use k = 2048, w = 512, D = 128;
# P3 uses k = 256, w = 256, D = 64.
#
# Each family: its functions and the options passed to the GPU pipeline
# (`sparsek-compile --pipeline-options=...`; "" = the pipeline's defaults:
# fuse-select-attention=true, select-chunk=0 = automatic). A function name is
# unique over all families: gpu_bench.py loads every library in one process
# and finds a function by its name.
FAMILIES = {
    "attention": {"functions": [
        ("attention_bf16_w512_d128", lambda n: ir.attention_function(n, 512, "bf16", head_dim=128)),
        ("attention_bf16_w256_d64", lambda n: ir.attention_function(n, 256, "bf16", head_dim=64)),
    ]},
    "decode": {"functions": [
        ("decode_bf16_k2048_w512_d128", lambda n: ir.decode_function(n, 2048, 512, "bf16", head_dim=128)),
    ], "pipeline_options": "decode-kernel=loops"},
    # The same decode tile first (sparsek-tile-decode-attention): one block per
    # (sequence, KV head, split), the G heads sharing 16-byte K/V loads, the
    # splits merged in the same launch. Run-time head counts (the signature
    # of the loop function: a kernel per G picked at run time) and static
    # ones (Hq = 32, Hkv = 8, as a compiled model knows them: one kernel,
    # fewer registers).
    "decode_tiles": {
        "functions": [
            ("decode_bf16_k2048_w512_d128_tiles",
             lambda n: ir.decode_function(n, 2048, 512, "bf16", head_dim=128)),
            ("decode_bf16_k2048_w512_d128_tiles_h32x8",
             lambda n: ir.decode_function(n, 2048, 512, "bf16", head_dim=128, num_heads=32,
                                          kv_heads=8)),
        ],
        "pipeline_options": "decode-kernel=tiles"},
    # The same launch on tensor cores (math=mma): mma.sync over 16-slot key
    # tiles, P kept in registers.
    "decode_tiles_mma": {
        "functions": [
            ("decode_bf16_k2048_w512_d128_tiles_mma",
             lambda n: ir.decode_function(n, 2048, 512, "bf16", head_dim=128)),
            ("decode_bf16_k2048_w512_d128_tiles_mma_h32x8",
             lambda n: ir.decode_function(n, 2048, 512, "bf16", head_dim=128, num_heads=32,
                                          kv_heads=8)),
        ],
        "pipeline_options": "decode-kernel=tiles-mma"},
    "select": {"functions": [
        ("select_k2048_w512", lambda n: ir.select_function(n, 2048, 512)),
        ("select_k256_w256", lambda n: ir.select_function(n, 256, 256)),
    ]},
    # The composite op as the GPU pipeline lowers it by default: fused (per-query
    # thresholds, attention filtered by them; no per-query indices or gates).
    "select_attention": {
        "functions": [
            ("select_attention_bf16_k2048_w512", lambda n: _select_attention(n, 2048, 512, 128)),
            ("select_attention_bf16_k256_w256", lambda n: _select_attention(n, 256, 256, 64)),
        ],
        "pipeline_options": "prefill-kernel=loops",
        "composite_lowering": "fused, one query per thread (prefill-kernel=loops)"},
    # The same op decomposed: sparsek.select (indices and gates materialized)
    # then sparsek.attention.
    "select_attention_decomposed": {
        "functions": [
            ("select_attention_bf16_k2048_w512_decomposed", lambda n: _select_attention(n, 2048, 512, 128)),
            ("select_attention_bf16_k256_w256_decomposed", lambda n: _select_attention(n, 256, 256, 64)),
        ],
        "pipeline_options": "prefill-kernel=loops fuse-select-attention=false",
        "composite_lowering": "decomposed: select (indices, gates materialized) then attention"},
    # The same op tile first (sparsek-tile-select-attention): block key sets
    # from the chunked selection, then one mma.sync kernel (64 rows of
    # (query, head) per CTA, cp.async gathers, tensor cores).
    "select_attention_mma_sync": {
        "functions": [
            ("select_attention_bf16_k2048_w512_mma_sync", lambda n: _select_attention(n, 2048, 512, 128)),
            ("select_attention_bf16_k256_w256_mma_sync", lambda n: _select_attention(n, 256, 256, 64)),
        ],
        "pipeline_options": "prefill-kernel=mma-sync",
        "composite_lowering": "tile first: block key sets, then mma.sync tiles (prefill-kernel=mma-sync)"},
    # The same tiles on Hopper wgmma (sm_90a only): one warpgroup per 64 rows,
    # double-buffered cp.async gathers into 128B-swizzled tiles, Q K^T and
    # (P * gates) V on wgmma with P from registers.
    "select_attention_wgmma": {
        "functions": [
            ("select_attention_bf16_k2048_w512_wgmma", lambda n: _select_attention(n, 2048, 512, 128)),
            ("select_attention_bf16_k256_w256_wgmma", lambda n: _select_attention(n, 256, 256, 64)),
        ],
        "pipeline_options": "prefill-kernel=wgmma",
        "composite_lowering": "tile first: block key sets, then wgmma tiles (prefill-kernel=wgmma, sm_90a; "
                              "what prefill-kernel=auto, the default, takes on sm_90a)"},
    # The composite's backward (G1): select_attention_grad in its parallel
    # loop form (backward-kernel=loops: the selection recomputed by the
    # chunked kernels; one thread per query for dq, dkey/dvalue/dgates added
    # atomically; the SPARSEK VJP per key over support ranges of queries).
    "select_attention_grad": {
        "functions": [
            ("select_attention_grad_bf16_k2048_w512",
             lambda n: ir.select_attention_grad_function(n, 2048, 512, "bf16", head_dim=128)),
            ("select_attention_grad_bf16_k256_w256",
             lambda n: ir.select_attention_grad_function(n, 256, 256, "bf16", head_dim=64)),
        ],
        "pipeline_options": "backward-kernel=loops",
        "composite_lowering": "backward, parallel loop form (backward-kernel=loops; atomics for "
                              "dkey/dvalue)"},
    # The same backward on the forward's tiles (backward-kernel=tiles): block
    # key sets, then one mma.sync kernel of two passes over each tile's key
    # list (row statistics, then dq in registers and dkey/dvalue added
    # atomically), the SPARSEK VJP's mean term over support ranges after.
    "select_attention_grad_tiles": {
        "functions": [
            ("select_attention_grad_bf16_k2048_w512_tiles",
             lambda n: ir.select_attention_grad_function(n, 2048, 512, "bf16", head_dim=128)),
            ("select_attention_grad_bf16_k256_w256_tiles",
             lambda n: ir.select_attention_grad_function(n, 256, 256, "bf16", head_dim=64)),
        ],
        "pipeline_options": "backward-kernel=tiles grad-tile-rows=64",
        "composite_lowering": "backward tile first: block key sets, then mma.sync tiles of 64 "
                              "rows (backward-kernel=tiles grad-tile-rows=64)"},
    # The same on 128-row tiles (8 warps sharing each K/V gather, half the
    # atomic adds per row): the GPU pipeline's default backward.
    "select_attention_grad_tiles128": {
        "functions": [
            ("select_attention_grad_bf16_k2048_w512_tiles128",
             lambda n: ir.select_attention_grad_function(n, 2048, 512, "bf16", head_dim=128)),
            ("select_attention_grad_bf16_k256_w256_tiles128",
             lambda n: ir.select_attention_grad_function(n, 256, 256, "bf16", head_dim=64)),
        ],
        "pipeline_options": "backward-kernel=tiles",
        "composite_lowering": "backward tile first on 128-row tiles (backward-kernel=tiles, "
                              "the default)"},
}


# Every family targets sm_90a, the chip sparsek.gpu.default_chip() compiles for
# on the H100/H200 the benchmark runs on (sm_90a code runs there alone); only
# prefill-kernel=auto depends on it (wgmma there), so each composite family
# names its kernel.
BENCH_CHIP_OPTIONS = "chip=sm_90a"


def _select_attention(name, k, w, d):
    """The composite op, with a static head dim where the builder takes one
    (the GPU path needs it)."""
    if "head_dim" in inspect.signature(ir.select_attention_function).parameters:
        return ir.select_attention_function(name, k, w, "bf16", head_dim=d)
    return ir.select_attention_function(name, k, w, "bf16")


def compile_family(funcs, out_so, runtime_dir, pipeline_options=""):
    """Returns (command, None) on success, else (command, the compiler's error text)."""
    text = ir.module(*[make(name) for name, make in funcs])
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "module.mlir")
        with open(src, "w") as f:
            f.write(text)
        cmd = compile_command(src, out_so, runtime_dir, pipeline_options)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        # the command as recorded: paths relative to OUT_DIR
        shown = shlex.join(["sparsek-compile", "module.mlir", "-o", os.path.basename(out_so), "--target=gpu",
                            "--runtime-dir=."] + cmd[6:])
        if proc.returncode:
            return shown, (proc.stderr or proc.stdout).strip()[-2000:]
    return shown, None


def main():
    p = argparse.ArgumentParser(usage=__doc__)
    p.add_argument("out")
    p.add_argument("--families", help="comma-separated families (default: all)")
    p.add_argument("--options", default="", help="pipeline options added to every family's")
    a = p.parse_args()
    families = {f: FAMILIES[f] for f in a.families.split(",")} if a.families else FAMILIES
    out = os.path.abspath(a.out)
    copy_runtime(out)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.rstrip()
    diff = subprocess.run(["git", "-C", ROOT, "diff", "HEAD"], capture_output=True).stdout
    manifest = {"commit": commit, "worktree_dirty": bool(dirty),
                "worktree_modified": dirty.splitlines(),
                "worktree_diff_sha256": hashlib.sha256(diff).hexdigest(), "families": {}}
    names = [n for spec in FAMILIES.values() for n, _ in spec["functions"]]
    assert len(names) == len(set(names)), "function names must be unique over the families"
    for family, spec in families.items():
        funcs = spec["functions"]
        options = " ".join(o for o in (BENCH_CHIP_OPTIONS, spec.get("pipeline_options", ""), a.options)
                           if o)
        lib = f"libbench_{family}.so"
        path = os.path.join(out, lib)
        if os.path.exists(path):
            os.remove(path)
        t0 = time.time()
        command, error = compile_family(funcs, path, out, options)
        entry = {"functions": [n for n, _ in funcs], "pipeline_options": options,
                 "command": command, "compile_s": round(time.time() - t0, 1)}
        if "composite_lowering" in spec:
            entry["composite_lowering"] = spec["composite_lowering"]
        if error is None:
            entry["library"] = lib
            print(f"{family}: built {lib} (pipeline options: {options or 'defaults'}; "
                  f"{entry['compile_s']} s)")
        else:
            entry["error"] = error
            print(f"{family}: not available ({error.splitlines()[-1] if error else 'failed'})")
        manifest["families"][family] = entry
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    size = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    print(f"bench artifacts in {out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
