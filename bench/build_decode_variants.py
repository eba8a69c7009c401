#!/usr/bin/env python3
# Builds variants of the tile-first decode kernel (sparsek-tile-decode-attention,
# decode-kernel=tiles) that differ in tuning constants, for one GPU run of
# bench/decode_variants.py to time them side by side. Experiment only: the
# constants stay constants in the project; this script patches a scratch copy
# of the sources so that they are read from SPARSEK_XP_* environment variables
# at compile time, builds that copy's sparsek-compile once (ccache), then
# compiles one library per variant.
"""Build decode kernel variants (no GPU needed):

    python3 bench/build_decode_variants.py OUT_DIR [--only NAME,...] [--list]

OUT_DIR receives libsparsek_runtime.so, libdecode_<variant>.so per variant
(one function decode_<variant>: D1's shape, bf16, Hq = 32, Hkv = 8, D = 128,
k = 2048, w = 512, static head counts: one kernel, G = 4), manifest.json
(knobs, ptxas registers / spills / shared memory of each kernel, commit) and
python/sparsek of HEAD. The scratch copy and its build live in
build/decode-variants-src (reused; delete it to start over).

Knobs (unset = the code's value; see VARIANTS):
  TARGET_BLOCKS   the pass's target-blocks (splits = ceil(target / pairs))
  MIN_SPLIT_SLOTS kDecodeMinSplitSlots (at most slots / this many splits)
  STAGES          kDecodeStages (cp.async ring depth per warp)
  WARPS           kDecodeWarps (warps per block)
  CHUNKS          chunksPerLane (16-byte K and V chunks per lane and iteration)
  PREFETCH        kPrefetchIters (L2 bulk prefetch distance, iterations)
  EX2FTZ          0: the walk's exp2 as math.exp2 (libdevice: MUFU.EX2 with a
                  denormal range fix-up; the kernel of the H100 run
                  bench/results/gpu_bench_h100_6083817.json), else
                  ex2.approx.ftz.f32 (the code's)
  MINCTAS         nvvm.minctasm on the kernel (0: none): ptxas keeps
                  registers low enough for this many blocks per SM
"""

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from gpu_artifacts import copy_runtime  # noqa: E402
from sparsek import ir  # noqa: E402

SHAPE = dict(k=2048, w=512, D=128, Hq=32, Hkv=8)
PIPELINE_OPTIONS = "chip=sm_90a decode-kernel=tiles"

# name -> knobs. "default" is the code as committed (no knob set): the
# reference the others are compared with. Shared memory is static (48 KiB at
# most per block): STAGES x WARPS x CHUNKS x 1152 bytes of ring plus the warp
# states must fit, so deeper rings come with fewer chunks per lane.
VARIANTS = {
    "default": {},
    # The split rule: blocks aimed at (B = 1 gets min(40, target / 8) splits;
    # B = 16: target / 128; B = 64: target / 512; B = 256: always 1).
    "tb396": {"TARGET_BLOCKS": 396},
    "tb528": {"TARGET_BLOCKS": 528},
    "tb792": {"TARGET_BLOCKS": 792},
    "tb1056": {"TARGET_BLOCKS": 1056},
    "tb1584": {"TARGET_BLOCKS": 1584},
    "tb2112": {"TARGET_BLOCKS": 2112},
    "tb1056_min32": {"TARGET_BLOCKS": 1056, "MIN_SPLIT_SLOTS": 32},
    "tb2112_min128": {"TARGET_BLOCKS": 2112, "MIN_SPLIT_SLOTS": 128},
    # Occupancy: 161 registers allow 3 blocks per SM; ask ptxas for 4.
    "minctas4": {"MINCTAS": 4},
    "minctas4_tb528": {"MINCTAS": 4, "TARGET_BLOCKS": 528},
    "minctas4_tb1056": {"MINCTAS": 4, "TARGET_BLOCKS": 1056},
    # Ring depth and granularity (bytes in flight per warp).
    "st4_ch2": {"STAGES": 4, "CHUNKS": 2},
    "st3_ch2": {"STAGES": 3, "CHUNKS": 2},
    "st8_ch1": {"STAGES": 8, "CHUNKS": 1},
    "st4_ch2_tb1056": {"STAGES": 4, "CHUNKS": 2, "TARGET_BLOCKS": 1056},
    "st8_ch1_tb1056": {"STAGES": 8, "CHUNKS": 1, "TARGET_BLOCKS": 1056},
    # Warps per block.
    "w8_ch1": {"WARPS": 8, "CHUNKS": 1},
    "w8_ch1_tb1056": {"WARPS": 8, "CHUNKS": 1, "TARGET_BLOCKS": 1056},
    "w8_ch1_st3_tb1056": {"WARPS": 8, "CHUNKS": 1, "STAGES": 3, "TARGET_BLOCKS": 1056},
    # 53 KB of static workgroup memory (ptxas accepts it; whether the launch
    # does is part of the experiment).
    "w8_ch2": {"WARPS": 8, "CHUNKS": 2},
    "w2": {"WARPS": 2},
    "w2_tb1056": {"WARPS": 2, "TARGET_BLOCKS": 1056},
    # exp2 as before (math.exp2: 3 more instructions per MUFU.EX2): the
    # kernel of the last H100 measurements.
    "ex2_libdevice": {"EX2FTZ": 0},
    "ex2_libdevice_minctas4": {"EX2FTZ": 0, "MINCTAS": 4},
    # L2 prefetch distance.
    "pf0": {"PREFETCH": 0},
    "pf4": {"PREFETCH": 4},
}

SCRATCH = os.path.join(ROOT, "build", "decode-variants-src")
CONV = "lib/Conversion/SparseKToGPU"


def _sub(text, pattern, repl, path, count=1):
    new, n = re.subn(pattern, repl, text)
    if n != count:
        sys.exit(f"knob patch: {pattern!r} matched {n} times in {path} (expected {count}): "
                 f"the decode kernel's constants moved; update bench/build_decode_variants.py")
    return new


def patch_sources(src):
    """Makes the tuning constants of the scratch copy read SPARSEK_XP_*."""
    def edit(rel, *subs):
        path = os.path.join(src, rel)
        with open(path) as f:
            text = f.read()
        for pattern, repl in subs:
            text = _sub(text, pattern, repl, rel)
        with open(path, "w") as f:
            f.write(text)

    knob = ("#include <cstdlib>\n"
            "namespace mlir::sparsek {\n"
            "inline int64_t xpKnob(const char *name, int64_t fallback) {\n"
            "  const char *v = std::getenv(name);\n"
            "  return v && *v ? std::atoll(v) : fallback;\n"
            "}\n"
            "} // namespace mlir::sparsek\n")
    edit(f"{CONV}/DecodeTiles.h",
         (r'(#include "mlir/IR/Builders.h"\n)', lambda m: m.group(1) + knob),
         (r"constexpr int64_t kDecodeWarps = (\d+);",
          r'inline const int64_t kDecodeWarps = xpKnob("SPARSEK_XP_WARPS", \1);'),
         (r"constexpr int64_t kDecodeThreads = kDecodeWarps \* 32;",
          "inline const int64_t kDecodeThreads = kDecodeWarps * 32;"),
         (r"constexpr int64_t kDecodeMinSplitSlots = (\d+);",
          r'inline const int64_t kDecodeMinSplitSlots = xpKnob("SPARSEK_XP_MIN_SPLIT_SLOTS", \1);'))
    edit(f"{CONV}/DecodeTiles.cpp",
         (r"(\n  int64_t chunks = )([^;]+);",
          r'\1xpKnob("SPARSEK_XP_CHUNKS", 0) ? xpKnob("SPARSEK_XP_CHUNKS", 0) : (\2);'))
    edit(f"{CONV}/DecodeTileKernel.cpp",
         (r"constexpr int64_t kDecodeStages = (\d+);",
          r'static const int64_t kDecodeStages = xpKnob("SPARSEK_XP_STAGES", \1);'),
         (r"constexpr int64_t kPrefetchIters = (\d+);",
          r'static const int64_t kPrefetchIters = xpKnob("SPARSEK_XP_PREFETCH", \1);'),
         (r"(\n  Value exp2\(Value x\) \{\n)(    return LLVM::CallIntrinsicOp)",
          lambda m: m.group(1) + '    if (!xpKnob("SPARSEK_XP_EX2FTZ", 1))\n'
          "      return KernelMath::exp2(x);\n" + m.group(2)),
         (r"(\n  fn\.setKnownBlockSizeAttr\([^;]*;\n)",
          lambda m: m.group(1) + '  if (int64_t m = xpKnob("SPARSEK_XP_MINCTAS", 0))\n'
          '    fn->setAttr("nvvm.minctasm", mb.getI32IntegerAttr(m));\n'))
    edit(f"{CONV}/TileDecodeAttention.cpp",
         (r'Lowering lowering\{module, kernel, math == "mma", targetBlocks\};',
          'Lowering lowering{module, kernel, math == "mma",\n'
          '                  xpKnob("SPARSEK_XP_TARGET_BLOCKS", targetBlocks)};'))


def git(*args):
    return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, text=True).stdout


def sync_sources(src, skip):
    """Copies the tracked files of the work tree (as they are now) into src,
    rewriting only files that differ (so the scratch build stays incremental)."""
    files = [f for f in git("ls-files", "-z").split("\0") if f]
    for rel in files:
        if rel in skip:
            continue
        a = os.path.join(ROOT, rel)
        if not os.path.isfile(a) or os.path.islink(a):
            continue
        b = os.path.join(src, rel)
        with open(a, "rb") as f:
            data = f.read()
        if os.path.exists(b):
            with open(b, "rb") as f:
                if f.read() == data:
                    continue
        os.makedirs(os.path.dirname(b), exist_ok=True)
        with open(b, "wb") as f:
            f.write(data)
        shutil.copymode(a, b)


def build_scratch():
    src = os.path.join(SCRATCH, "src")
    os.makedirs(src, exist_ok=True)
    patched = [f"{CONV}/{n}" for n in ("DecodeTiles.h", "DecodeTiles.cpp", "DecodeTileKernel.cpp",
                                       "TileDecodeAttention.cpp")]
    sync_sources(src, set(patched))
    for rel in patched:  # patch from the work tree's text, rewrite only on change
        with open(os.path.join(ROOT, rel)) as f:
            text = f.read()
        tmp = os.path.join(SCRATCH, "pristine", rel)
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        with open(tmp, "w") as f:
            f.write(text)
    staging = os.path.join(SCRATCH, "pristine")
    patch_sources(staging)
    for rel in patched:
        with open(os.path.join(staging, rel)) as f:
            new = f.read()
        dst = os.path.join(src, rel)
        if os.path.exists(dst):
            with open(dst) as f:
                if f.read() == new:
                    continue
        with open(dst, "w") as f:
            f.write(new)
    build = os.path.join(src, "build")
    env = dict(os.environ)
    env.setdefault("CCACHE_BASEDIR", os.path.dirname(ROOT))
    env.setdefault("CCACHE_NOHASHDIR", "1")
    if not os.path.exists(os.path.join(build, "build.ninja")):
        launcher = ([f"-DCMAKE_CXX_COMPILER_LAUNCHER={shutil.which('ccache')}",
                     f"-DCMAKE_C_COMPILER_LAUNCHER={shutil.which('ccache')}"] if shutil.which("ccache") else [])
        subprocess.run(["cmake", "-G", "Ninja", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                        "-DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit"] + launcher,
                       check=True, env=env, stdout=subprocess.DEVNULL)
    t0 = time.time()
    subprocess.run(["nice", "cmake", "--build", build, "--target", "sparsek-compile", "sparsek-opt"],
                   check=True, env=env)
    print(f"scratch sparsek-compile built in {time.time() - t0:.0f} s")
    return os.path.join(build, "bin")


def ptxas_info(bindir, module_path, env):
    """Registers, spills and shared memory of the variant's kernel (sm_90a)."""
    isa = subprocess.run([os.path.join(bindir, "sparsek-opt"), module_path, "--pass-pipeline",
                          f"builtin.module(sparsek-gpu-pipeline{{format=isa {PIPELINE_OPTIONS}}})"],
                         capture_output=True, text=True, env=env)
    if isa.returncode:
        return {"error": isa.stderr[-500:]}
    info = {}
    for m in re.finditer(r'gpu\.binary @(sparsek_decode_tiles_\w+).*?assembly = "((?:[^"\\]|\\.)*)"',
                         isa.stdout, re.S):
        ptx = re.sub(r"\\([0-9A-Fa-f]{2})", lambda x: chr(int(x.group(1), 16)), m.group(2))
        ptx = ptx.replace("\\\\", "\\")
        ptxas = shutil.which("ptxas") or "/usr/local/cuda/bin/ptxas"
        p = subprocess.run([ptxas, "-arch=sm_90a", "-v", "-", "-o", os.devnull], input=ptx,
                           capture_output=True, text=True)
        text = p.stderr
        regs = re.search(r"Used (\d+) registers", text)
        smem = re.search(r"(\d+) bytes smem", text)
        spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
        info = {"registers": int(regs.group(1)) if regs else None,
                "smem_bytes": int(smem.group(1)) if smem else None,
                "spill_store_bytes": int(spill.group(1)) if spill else None,
                "spill_load_bytes": int(spill.group(2)) if spill else None}
        if p.returncode:
            info["error"] = text[-500:]
    return info


def splits_of(knobs, batches=(1, 16, 64, 256)):
    """Splits per B under the pass's rule (emitDecodeSplits), with the
    variant's knobs or the code's values as read from the sources."""
    def const(rel, name):
        with open(os.path.join(ROOT, rel)) as f:
            m = re.search(rf"constexpr int64_t {name} = (\d+);", f.read())
        return int(m.group(1)) if m else None
    with open(os.path.join(ROOT, "include/sparsek/Conversion/Passes.td")) as f:
        tb_default = int(re.search(r'"targetBlocks", "target-blocks", "int64_t", /\*default=\*/"(\d+)"',
                                   f.read()).group(1))
    tb = int(knobs.get("TARGET_BLOCKS", tb_default))
    min_slots = int(knobs.get("MIN_SPLIT_SLOTS", const(f"{CONV}/DecodeTiles.h", "kDecodeMinSplitSlots")))
    slots = SHAPE["k"] + SHAPE["w"]
    out = {}
    for B in batches:
        pairs = max(1, B * SHAPE["Hkv"])
        out[str(B)] = max(1, min(-(-tb // pairs), max(1, slots // min_slots)))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?")
    p.add_argument("--only", help="comma-separated variant names (default: all)")
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    a = p.parse_args()
    if a.list:
        for n, kn in VARIANTS.items():
            print(f"{n}: {kn or 'the code as committed'}")
        return
    if not a.out:
        sys.exit(__doc__)
    names = a.only.split(",") if a.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants: {unknown}")
    if "default" not in names:
        names.insert(0, "default")
    out = os.path.abspath(a.out)
    copy_runtime(out)
    bindir = build_scratch()
    diff = subprocess.run(["git", "-C", ROOT, "diff", "HEAD"], capture_output=True).stdout
    manifest = {"commit": git("rev-parse", "HEAD").strip(),
                "worktree_dirty": bool(git("status", "--porcelain", "--untracked-files=no").strip()),
                "worktree_diff_sha256": hashlib.sha256(diff).hexdigest(),
                "shape": SHAPE, "pipeline_options": PIPELINE_OPTIONS, "variants": {}}
    for name in names:
        knobs = VARIANTS[name]
        fn = f"decode_{name}"
        src = os.path.join(SCRATCH, f"{fn}.mlir")
        with open(src, "w") as f:
            f.write(ir.module(ir.decode_function(fn, SHAPE["k"], SHAPE["w"], "bf16", head_dim=SHAPE["D"],
                                                 num_heads=SHAPE["Hq"], kv_heads=SHAPE["Hkv"])))
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("SPARSEK_XP_"):
                del env[key]
        env.update({f"SPARSEK_XP_{k}": str(v) for k, v in knobs.items()})
        lib = f"libdecode_{name}.so"
        cmd = [os.path.join(bindir, "sparsek-compile"), src, "-o", os.path.join(out, lib), "--target=gpu",
               f"--runtime-dir={out}", f"--pipeline-options={PIPELINE_OPTIONS}"]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        entry = {"knobs": knobs, "function": fn, "splits": splits_of(knobs),
                 "command": " ".join(f"SPARSEK_XP_{k}={v}" for k, v in knobs.items()) + " " +
                 shlex.join(["sparsek-compile", os.path.basename(src), "-o", lib, "--target=gpu",
                             "--runtime-dir=.", f"--pipeline-options={PIPELINE_OPTIONS}"]),
                 "compile_s": round(time.time() - t0, 1)}
        if proc.returncode:
            entry["error"] = (proc.stderr or proc.stdout)[-2000:]
            print(f"{name}: FAILED: {entry['error'].strip().splitlines()[-1:]}")
        else:
            entry["library"] = lib
            info = ptxas_info(bindir, src, env)
            warps = int(knobs.get("WARPS", 4))
            if info.get("registers"):
                per_warp = -(-info["registers"] * 32 // 256) * 256
                info["blocks_per_sm_by_registers"] = 65536 // (per_warp * warps)
            if info.get("smem_bytes") is not None:
                info["blocks_per_sm_by_smem"] = (228 * 1024) // (info["smem_bytes"] + 1024)
            entry["ptxas"] = info
            print(f"{name}: {lib} ({entry['compile_s']} s) {info}")
        manifest["variants"][name] = entry
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    rm = os.path.join(out, "python")
    shutil.rmtree(rm, ignore_errors=True)
    os.makedirs(rm)
    archive = subprocess.run(["git", "-C", ROOT, "archive", "HEAD", "python/sparsek"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    print(f"decode variants in {out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
