# Calls the select_attention_wgmma bench function of an artifacts folder three
# times at one BENCHMARKS.md shape, for a profiler to pick one launch of it:
#   ncu --kernel-name regex:'^tiles$' --launch-skip 2 --launch-count 1 [sections] \
#       python3 bench/ncu_select_attention.py build/bench-artifacts P1-32k
"""python3 bench/ncu_select_attention.py ARTIFACTS {P1-32k,P1-8k,P3}"""
import os
import sys

import torch

from ab_select_attention import FORM, SHAPES, make_inputs


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in SHAPES:
        sys.exit(__doc__)
    artifacts, shape = sys.argv[1], sys.argv[2]
    sys.path.insert(0, os.path.join(artifacts, "python"))
    from sparsek.gpu import GPULibrary

    B, Hq, Hkv, D, k, w, T = SHAPES[shape]
    q, key, value, u = make_inputs(B, Hq, Hkv, D, T)
    out = torch.empty(B, Hq, T, D, device="cuda", dtype=torch.bfloat16)
    lib = GPULibrary(os.path.join(artifacts, f"libbench_select_attention_{FORM}.so"))
    for _ in range(3):
        lib.call(f"select_attention_bf16_k{k}_w{w}_{FORM}", q, key, value, u, out)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
