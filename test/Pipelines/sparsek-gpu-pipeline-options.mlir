// Every option of sparsek-gpu-pipeline is checked before the pipeline is
// built, with a message naming the option and a non-zero exit, in
// sparsek-opt and sparsek-compile alike. Upstream passes took the values
// verbatim: an empty chip segfaulted the NVVM target check, an unknown
// format printed an error but exited 0, query-block=4096 was accepted.
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=format=garbage 2>&1 | FileCheck %s --check-prefix=CHECK-FORMAT
// RUN: not sparsek-opt %s "--sparsek-gpu-pipeline=chip=" 2>&1 | FileCheck %s --check-prefix=CHECK-CHIP
// RUN: not sparsek-opt %s "--sparsek-gpu-pipeline=chip=sm_9x" 2>&1 | FileCheck %s --check-prefix=CHECK-CHIP9X
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=query-block=4096 2>&1 | FileCheck %s --check-prefix=CHECK-BLOCK
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=query-block=0 2>&1 | FileCheck %s --check-prefix=CHECK-BLOCK0
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=features=+ptx80,+ptx99 2>&1 | FileCheck %s --check-prefix=CHECK-FEATURES
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=opt-level=4 2>&1 | FileCheck %s --check-prefix=CHECK-OPT
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=select-chunk=-1 2>&1 | FileCheck %s --check-prefix=CHECK-CHUNK
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=index-bitwidth=7 2>&1 | FileCheck %s --check-prefix=CHECK-BITS
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=query-block=abc 2>&1 | FileCheck %s --check-prefix=CHECK-PARSE
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=prefill-kernel=wgmma 2>&1 | FileCheck %s --check-prefix=CHECK-WGMMA
// RUN: not sparsek-opt %s "--sparsek-gpu-pipeline=prefill-kernel=wgmma chip=sm_100a" 2>&1 | FileCheck %s --check-prefix=CHECK-WGMMA100
// RUN: not sparsek-opt %s "--sparsek-gpu-pipeline=prefill-kernel=tiles chip=sm_90a" 2>&1 | FileCheck %s --check-prefix=CHECK-KERNEL
// RUN: not sparsek-compile %s -o %t.so --target=gpu "--pipeline-options=prefill-kernel=wgmma" 2>&1 | FileCheck %s --check-prefix=CHECK-WGMMA
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=tile-rows=96 2>&1 | FileCheck %s --check-prefix=CHECK-ROWS
// RUN: not sparsek-opt %s "--sparsek-gpu-pipeline=prefill-kernel=mma-sync chip=sm_90a tile-rows=128" 2>&1 | FileCheck %s --check-prefix=CHECK-ROWS128
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=tile-rows=128 2>&1 | FileCheck %s --check-prefix=CHECK-ROWS128
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=grad-tile-rows=96 2>&1 | FileCheck %s --check-prefix=CHECK-GRAD-ROWS
// Several bad options: each is reported.
// RUN: not sparsek-opt %s "--sparsek-gpu-pipeline=chip= format=elf" 2>&1 | FileCheck %s --check-prefixes=CHECK-CHIP,CHECK-ELF
// RUN: not sparsek-compile %s -o %t.so --target=gpu --pipeline-options=format=garbage 2>&1 | FileCheck %s --check-prefix=CHECK-FORMAT
// RUN: not sparsek-compile %s -o %t.so --target=gpu --pipeline-options=query-block=4096 2>&1 | FileCheck %s --check-prefix=CHECK-BLOCK
// The limits themselves are accepted.
// RUN: sparsek-opt %s "--sparsek-gpu-pipeline=format=isa query-block=1024 chip=sm_90a features=+ptx80 opt-level=0" | FileCheck %s --check-prefix=CHECK-OK

// CHECK-FORMAT: sparsek-gpu-pipeline: option format must be one of fatbin, bin, isa, got 'garbage'
// CHECK-CHIP: sparsek-gpu-pipeline: option chip must be an NVPTX architecture such as sm_90 or sm_90a, got ''
// CHECK-CHIP9X: option chip must be an NVPTX architecture such as sm_90 or sm_90a, got 'sm_9x'
// CHECK-BLOCK: option query-block must be in [1, 1024] (one thread per query, and a GPU block has at most 1024 threads), got 4096
// CHECK-BLOCK0: option query-block must be in [1, 1024] {{.*}}, got 0
// CHECK-FEATURES: option features must be a comma-separated list of NVPTX features such as +ptx80 (one item is unknown), got '+ptx99'
// CHECK-OPT: option opt-level must be in [0, 3], got 4
// CHECK-CHUNK: option select-chunk must be >= 0 (0 picks one), got -1
// CHECK-BITS: option index-bitwidth must be one of 32, 64, got 7
// CHECK-GRAD-ROWS: sparsek-gpu-pipeline: option grad-tile-rows must be one of 0, 64, 128, got 96
// CHECK-PARSE: sparsek-gpu-pipeline: cannot parse the options 'query-block=abc'
// CHECK-WGMMA: sparsek-gpu-pipeline: option chip must be sm_90a with prefill-kernel=wgmma (Hopper wgmma instructions), got 'sm_90'
// CHECK-WGMMA100: option chip must be sm_90a with prefill-kernel=wgmma (Hopper wgmma instructions), got 'sm_100a'
// CHECK-ROWS: option tile-rows must be one of 0, 64, 128, got 96
// CHECK-ROWS128: option tile-rows must be 0 or 64 unless prefill-kernel is wgmma (or auto on sm_90a): only wgmma tiles come in two warpgroups, got 128
// CHECK-KERNEL: Cannot find option named 'tiles'!
// CHECK-KERNEL: sparsek-gpu-pipeline: cannot parse the options 'prefill-kernel=tiles chip=sm_90a'
// CHECK-ELF: option format must be one of fatbin, bin, isa, got 'elf'
// CHECK-OK: gpu.binary @attention_kernel
// CHECK-OK-SAME: #nvvm.target<O = 0, chip = "sm_90a", features = "+ptx80">
// CHECK-OK-SAME: .maxntid 1024, 1, 1
func.func @attention(%q: tensor<?x?x?x16xf32>, %k: tensor<?x?x?x16xf32>, %v: tensor<?x?x?x16xf32>,
                     %i: tensor<?x?x?x4xi32>, %g: tensor<?x?x?x4xf32>, %o0: tensor<?x?x?x16xf32>)
    -> tensor<?x?x?x16xf32> {
  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<?x?x?x16xf32>, tensor<?x?x?x16xf32>,
                             tensor<?x?x?x16xf32>, tensor<?x?x?x4xi32>, tensor<?x?x?x4xf32>)
         w = 4 outs(%o0 : tensor<?x?x?x16xf32>) -> tensor<?x?x?x16xf32>
  return %o : tensor<?x?x?x16xf32>
}
