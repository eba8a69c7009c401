#!/usr/bin/env python3
# Times the decode kernel variants of bench/build_decode_variants.py on D1
# (BENCHMARKS.md) side by side with the baselines of the same run: the
# device copy rate and SDPA over the compact cache with V pre-gated. Same
# method as bench/gpu_bench.py (its time_fn: L2 flush, ~1 ms GPU sleep,
# CUDA events, 5 warm-ups, median of 20). Experiment only.
"""Time decode kernel variants on D1 (GPU machine):

    python3 bench/decode_variants.py --artifacts build/decode-variants --out DIR

Each variant's output is checked against the float64 reference on sampled
sequences (SPEC 8: 2e-2 on bf16) and against the default variant's output
(every sequence: max abs difference). Variants run in child processes; one
that faults loses only itself (the parent restarts the child after it).
Writes DIR/decode_variants.json and prints a table: per B, microseconds,
the fraction of the copy rate at which K/V (+ scores) are read, and the
ratio to SDPA pre-gated.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def _artifacts_python():
    for i, x in enumerate(sys.argv):
        if x == "--artifacts" and i + 1 < len(sys.argv):
            return os.path.join(sys.argv[i + 1], "python")
        if x.startswith("--artifacts="):
            return os.path.join(x.split("=", 1)[1], "python")
    return None


_py = _artifacts_python()
if _py and os.path.isdir(os.path.join(_py, "sparsek")):
    sys.path.insert(0, _py)
else:
    sys.path.insert(0, os.path.join(ROOT, "python"))

BATCHES = (1, 16, 64, 256)


def make_inputs(gb, B, c):
    """D1's inputs, from bench/gpu_bench.py (context 32768)."""
    return gb.decode_inputs(B, c["Hq"], c["Hkv"], c["D"], c["k"], c["w"], 32768)


def bytes_read(gb, B, c):
    """gpu_bench.py's bytes of our decode."""
    return gb.decode_bytes(B, c["Hq"], c["Hkv"], c["D"], c["k"], c["w"])


def child_baselines(a, gb, torch, manifest):
    """Copy rate, SDPA pre-gated per B, and the reference outputs of the
    sampled sequences (saved for the variant children)."""
    from sparsek import reference
    c = manifest["shape"]
    out = {"copy_rate": gb.copy_rate(), "sdpa_compact_pregated": {}}
    print(f"copy rate {out['copy_rate']['GBps']:.0f} GB/s", flush=True)
    budget = gb.Budget(120, 5)
    for B in a.batches:
        q, kc, vc, sc, tau, cnt, pos = make_inputs(gb, B, c)
        bs = sorted({0, B // 2, B - 1})
        want = reference.decode_attention(q[bs].float().cpu().numpy(), kc[bs].float().cpu().numpy(),
                                          vc[bs].float().cpu().numpy(), sc[bs].cpu().numpy(),
                                          tau[bs].cpu().numpy(), cnt[bs].cpu().numpy().astype(np.int64),
                                          pos[bs].cpu().numpy(), c["k"], c["w"])
        np.save(os.path.join(a.scratch, f"want_B{B}.npy"), want)

        def err(o):
            return float(np.abs(o.reshape(B, c["Hq"], c["D"])[bs].float().cpu().numpy() - want).max())
        gate = torch.where(torch.arange(c["k"] + c["w"], device="cuda") < c["k"],
                           (sc - tau[..., None]).clamp(0.0, 1.0), 1.0)
        vg = vc * gate[..., None].to(vc.dtype)
        res, best = gb.best_sdpa(q[:, :, None], kc, vg, False, err, budget, f"B={B} sdpa compact (pre-gated V)")
        out["sdpa_compact_pregated"][str(B)] = {"backends": res, "best": best,
                                                "median_ms": res[best]["median_ms"] if best else None}
        del q, kc, vc, sc, tau, cnt, pos, vg, gate
        torch.cuda.empty_cache()
    return out


def child_variants(a, gb, torch, manifest, names, progress, save):
    """Times `names` in order (the default first: the others compare with
    its output), saving the results after each variant."""
    from sparsek.gpu import GPULibrary
    c = manifest["shape"]
    results = {}
    inputs = {}
    for name in names:
        entry = manifest["variants"][name]
        r = results.setdefault(name, {})
        lib = None
        for B in a.batches:
            key = f"{name} B={B}"
            with open(progress, "w") as f:
                f.write(key)
            if "library" not in entry:
                r[str(B)] = {"error": "not built: " + entry.get("error", "")[-300:]}
                continue
            if B not in inputs:
                inputs[B] = make_inputs(gb, B, c)
            q, kc, vc, sc, tau, cnt, pos = inputs[B]
            bs = sorted({0, B // 2, B - 1})
            want = np.load(os.path.join(a.scratch, f"want_B{B}.npy"))
            ref_path = os.path.join(a.scratch, f"default_B{B}.npy")
            try:
                if lib is None:
                    lib = GPULibrary(os.path.join(a.artifacts, entry["library"]))
                o = torch.empty(B, c["Hq"], c["D"], dtype=torch.bfloat16, device="cuda")
                fn = lambda: lib.call(entry["function"], q, kc, vc, sc, tau, cnt, pos, o)  # noqa: E731
                fn()
                torch.cuda.synchronize()
                got = o.float().cpu().numpy()
                e = float(np.abs(got[bs] - want).max())
                rec = {"check_max_abs_err": e, "check_passed": e <= gb.TOL}
                if name == "default":
                    np.save(ref_path, got)
                elif os.path.exists(ref_path):
                    rec["max_abs_diff_vs_default"] = float(np.abs(got - np.load(ref_path)).max())
                rec.update(gb.time_fn(fn, 5.0))
                rec.pop("times_ms", None)
                r[str(B)] = rec
                print(f"  {key}: {rec['median_ms'] * 1e3:.1f} us, err {e:.2g}"
                      + (f", vs default {rec['max_abs_diff_vs_default']:.2g}"
                         if "max_abs_diff_vs_default" in rec else ""), flush=True)
                del o
            except Exception as ex:
                r[str(B)] = {"error": f"{type(ex).__name__}: {ex}"[:500]}
                print(f"  {key}: ERROR {r[str(B)]['error']}", flush=True)
        save(results)
    return results


def table(record):
    c = record["shape"]
    copy = record["baselines"]["copy_rate"]["GBps"]
    sd = record["baselines"]["sdpa_compact_pregated"]
    Bs = [str(B) for B in record["batches"]]
    lines = [f"D1 decode variants on {record['gpu']}: bf16 Hq {c['Hq']} Hkv {c['Hkv']} D {c['D']} "
             f"k {c['k']} w {c['w']}; copy rate {copy:.0f} GB/s; cell = us (fraction of copy rate, "
             f"ours / SDPA pre-gated)"]
    head = f"{'variant':<24} {'regs':>4} {'blk/SM':>6} {'splits':>10} " + " ".join(f"{'B=' + B:>22}" for B in Bs)
    lines.append(head)
    row = f"{'sdpa pre-gated':<24} {'':>4} {'':>6} {'':>10} "
    row += " ".join(f"{(sd[B]['median_ms'] or 0) * 1e3:>10.1f} us{'':>9}" if sd.get(B, {}).get("median_ms")
                    else f"{'-':>22}" for B in Bs)
    lines.append(row)
    for name, res in record["variants"].items():
        info = record["manifest_variants"][name].get("ptxas", {})
        occ = min(info.get("blocks_per_sm_by_registers") or 99, info.get("blocks_per_sm_by_smem") or 99)
        sp = record["manifest_variants"][name].get("splits", {})
        sp = "/".join(str(sp.get(B, "?")) for B in Bs)
        row = f"{name:<24} {info.get('registers') or '-':>4} {occ if occ != 99 else '-':>6} {sp:>10} "
        cells = []
        for B in Bs:
            r = res.get(B, {})
            if "median_ms" not in r:
                cells.append(f"{'ERR' if 'error' in r else '-':>22}")
                continue
            frac = r["GBps"] / copy
            ratio = r["median_ms"] / sd[B]["median_ms"] if sd.get(B, {}).get("median_ms") else float("nan")
            bad = "" if r.get("check_passed") else "!"
            cells.append(f"{r['median_ms'] * 1e3:>8.1f}{bad:1} ({frac * 100:3.0f}%, {ratio:4.2f}x)")
        lines.append(row + " ".join(cells))
    lines.append("regs, blk/SM: ptxas registers and resident blocks per SM (registers, static shared "
                 "memory); splits: per B; ! = failed the reference check (SPEC 8 tolerance 2e-2)")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", default=os.path.join(ROOT, "build", "decode-variants"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    p.add_argument("--name", default="decode_variants.json")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--only", help="comma-separated variants (default: all built)")
    p.add_argument("--child", choices=("baselines", "variants"), help=argparse.SUPPRESS)
    p.add_argument("--variants", help=argparse.SUPPRESS)
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--progress", help=argparse.SUPPRESS)
    p.add_argument("--scratch", help=argparse.SUPPRESS)
    a = p.parse_args()
    a.batches = [int(x) for x in a.batches.split(",")]
    with open(os.path.join(a.artifacts, "manifest.json")) as f:
        manifest = json.load(f)

    if a.child:
        import torch
        import gpu_bench as gb
        gb.torch = torch
        gb.DEV, gb.DTYPE = "cuda", torch.bfloat16
        gb._FLUSH = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
        def save(part):
            with open(a.part, "w") as f:
                json.dump(part, f, default=float)
        try:
            if a.child == "baselines":
                save(child_baselines(a, gb, torch, manifest))
            else:
                child_variants(a, gb, torch, manifest, a.variants.split(","), a.progress, save)
        except Exception:
            traceback.print_exc()
            sys.exit(1)
        return

    os.makedirs(a.out, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="decode_variants_")  # reference outputs between the children
    names = a.only.split(",") if a.only else list(manifest["variants"])
    if "default" in names:  # first: the others compare with its output
        names.remove("default")
        names.insert(0, "default")
    t0 = time.time()
    common = [sys.executable, os.path.abspath(__file__), "--artifacts", a.artifacts, "--scratch", scratch,
              "--batches", ",".join(map(str, a.batches))]
    part = os.path.join(scratch, "part.json")
    rc = subprocess.run(common + ["--child", "baselines", "--part", part]).returncode
    if rc:
        shutil.rmtree(scratch, ignore_errors=True)
        sys.exit(f"baselines child failed ({rc})")
    with open(part) as f:
        baselines = json.load(f)
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:
        gpu = f"unknown ({e})"
    variants, crashed = {}, []
    todo = list(names)
    while todo:
        progress = os.path.join(scratch, "progress")
        if os.path.exists(progress):
            os.remove(progress)
        if os.path.exists(part):
            os.remove(part)
        rc = subprocess.run(common + ["--child", "variants", "--variants", ",".join(todo), "--part", part,
                                      "--progress", progress]).returncode
        if os.path.exists(part):  # saved after each variant
            with open(part) as f:
                for n, r in json.load(f).items():
                    variants.setdefault(n, {}).update(r)
        if rc == 0:
            break
        # A fault: drop the variant it was timing and run the rest again.
        where = open(progress).read() if os.path.exists(progress) else None
        bad = where.split(" ")[0] if where else todo[0]
        crashed.append({"variant": bad, "at": where, "exit": rc})
        print(f"child ended with {rc} at {where}: {bad} dropped, rerunning the rest", flush=True)
        variants[bad] = {"crashed": where}
        todo = [n for n in todo if n not in variants]
    copy = baselines["copy_rate"]["GBps"]
    c = manifest["shape"]
    import gpu_bench as gb  # torch not needed for the byte count
    for name, res in variants.items():
        for B, r in res.items():
            if isinstance(r, dict) and r.get("median_ms"):
                r["GBps"] = bytes_read(gb, int(B), c) / (r["median_ms"] * 1e-3) / 1e9
                r["fraction_of_copy_rate"] = r["GBps"] / copy
                sd = baselines["sdpa_compact_pregated"].get(B, {}).get("median_ms")
                if sd:
                    r["ratio_to_sdpa_pregated"] = r["median_ms"] / sd
    record = {"benchmark": "decode_variants", "command": " ".join(["python3", "bench/decode_variants.py"]
                                                                  + sys.argv[1:]),
              "gpu": gpu, "artifacts_commit": manifest.get("commit"),
              "artifacts_worktree_dirty": manifest.get("worktree_dirty"), "shape": c,
              "batches": a.batches, "method": "bench/gpu_bench.py time_fn: L2 flush (256 MiB), ~1 ms GPU "
              "sleep, CUDA events, 5 warm-ups, median of 20",
              "baselines": baselines, "variants": variants, "crashed": crashed,
              "manifest_variants": manifest["variants"], "elapsed_s": round(time.time() - t0, 1)}
    shutil.rmtree(scratch, ignore_errors=True)
    record["table"] = table(record)
    path = os.path.join(a.out, a.name)
    with open(path, "w") as f:
        json.dump(record, f, indent=1, default=float)
    print(record["table"])
    print(f"wrote {path} ({record['elapsed_s']} s)")


if __name__ == "__main__":
    main()
