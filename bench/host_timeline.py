# Where the wall time of one compiled call goes, host side and device side:
# torch.profiler (CPU and CUDA activities) over one call after warm-ups, the
# driver/runtime API calls and the kernels on one timeline from the call's
# start, plus the host time of GPULibrary.call itself (Python wrapper and the
# generated entry point) over many calls. Runs on the GPU machine against a
# bench artifact folder (bench/build_bench_artifacts.py plus python/sparsek).
#   python3 bench/host_timeline.py --artifacts DIR [--cases P1-8k,P3,D1-1]
import argparse
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function


def cases(folder):
    """name -> (library file, function, argument builder)."""
    from ab_select_attention import make_inputs

    def prefill(B, Hq, Hkv, D, T, k, w):
        def build():
            q, key, value, u = make_inputs(B, Hq, Hkv, D, T)
            out = torch.empty(B, Hq, T, D, device="cuda", dtype=torch.bfloat16)
            return q, key, value, u, out
        return ("libbench_select_attention_wgmma.so",
                f"select_attention_bf16_k{k}_w{w}_wgmma", build)

    def decode(B, suffix):
        def build():
            from gpu_bench import decode_inputs
            Hq, Hkv, D, k, w = 32, 8, 128, 2048, 512
            q, kc, vc, sc, tau, cnt, pos = decode_inputs(B, Hq, Hkv, D, k, w, 32768)
            out = torch.empty(B, Hq, D, dtype=torch.bfloat16, device="cuda")
            return q, kc, vc, sc, tau, cnt, pos, out
        return ("libbench_decode_tiles.so", f"decode_bf16_k2048_w512_d128_tiles{suffix}", build)

    return {
        "P1-8k": prefill(1, 32, 8, 128, 8192, 2048, 512),
        "P3": prefill(8, 12, 12, 64, 4096, 256, 256),
        "D1-1": decode(1, ""),
        "D1-1-h32x8": decode(1, "_h32x8"),
        "D1-64": decode(64, ""),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--artifacts", required=True)
    p.add_argument("--cases", default="P1-8k,P3,D1-1")
    p.add_argument("--events", type=int, default=80, help="timeline rows printed per case")
    a = p.parse_args()
    sys.path.insert(0, os.path.join(a.artifacts, "python"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sparsek.gpu import GPULibrary

    table = cases(a.artifacts)
    libs = {}
    for name in a.cases.split(","):
        so, fn, build = table[name]
        if so not in libs:
            libs[so] = GPULibrary(os.path.join(a.artifacts, so))
        lib = libs[so]
        args = build()
        for _ in range(3):
            lib.call(fn, *args)
        torch.cuda.synchronize()

        # Host time of the call alone (returns once queued), then of the
        # generated entry point alone (the wrapper's work done once).
        host = []
        for _ in range(50):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            lib.call(fn, *args)
            host.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        events = []
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(50):
            torch.cuda.synchronize()
            start.record()
            lib.call(fn, *args)
            end.record()
            torch.cuda.synchronize()
            events.append(start.elapsed_time(end))
        host.sort()
        events.sort()
        print(f"== {name} {fn}: host time of call {host[len(host) // 2] * 1e6:.1f} us (median), "
              f"event time {events[len(events) // 2] * 1e3:.1f} us (median)")

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            with record_function("sparsek_call"):
                lib.call(fn, *args)
            torch.cuda.synchronize()
        evs = sorted(prof.events(), key=lambda e: e.time_range.start)
        mark = [e for e in evs if e.name == "sparsek_call"]
        t0 = mark[0].time_range.start if mark else evs[0].time_range.start
        shown = [e for e in evs if e.device_type == torch.autograd.DeviceType.CUDA
                 or e.name.startswith("cu") or e.name == "sparsek_call"]
        gpu = [e for e in shown if e.device_type == torch.autograd.DeviceType.CUDA]
        if gpu:
            busy = sum(e.time_range.elapsed_us() for e in gpu)
            print(f"   {len(gpu)} GPU events, {busy:.1f} us busy, first starts at "
                  f"{gpu[0].time_range.start - t0:.1f} us, last ends at {gpu[-1].time_range.end - t0:.1f} us")
        for e in shown[:a.events]:
            where = "GPU" if e.device_type == torch.autograd.DeviceType.CUDA else "cpu"
            print(f"   {where} {e.time_range.start - t0:9.1f} us  {e.time_range.elapsed_us():8.1f} us  "
                  f"{e.name[-48:]}")
        if len(shown) > a.events:
            print(f"   ... {len(shown) - a.events} more")
        del args
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
