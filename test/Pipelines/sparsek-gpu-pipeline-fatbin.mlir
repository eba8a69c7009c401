// With the CUDA toolkit's ptxas (no GPU needed), the GPU pipeline embeds an
// sm_90 fatbin: ptxas accepted the generated PTX.
// REQUIRES: ptxas
// RUN: sparsek-opt %s --sparsek-gpu-pipeline | FileCheck %s
// RUN: %mlir-opt-sparsek %s -p 'builtin.module(sparsek-gpu-pipeline)' | FileCheck %s

// CHECK: gpu.binary @attention_kernel
// CHECK-SAME: #gpu.object<#nvvm.target<O = 3, chip = "sm_90", features = "+ptx81">
// CHECK-NOT: .target sm_90
func.func @attention(%q: tensor<?x?x?x128xf16>, %k: tensor<?x?x?x128xf16>, %v: tensor<?x?x?x128xf16>,
                     %i: tensor<?x?x?x?xi64>, %g: tensor<?x?x?x?xf32>, %o0: tensor<?x?x?x128xf16>)
    -> tensor<?x?x?x128xf16> {
  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<?x?x?x128xf16>, tensor<?x?x?x128xf16>,
                             tensor<?x?x?x128xf16>, tensor<?x?x?x?xi64>, tensor<?x?x?x?xf32>)
         w = 512 outs(%o0 : tensor<?x?x?x128xf16>) -> tensor<?x?x?x128xf16>
  return %o : tensor<?x?x?x128xf16>
}
