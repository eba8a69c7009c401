// Ops without a GPU lowering fail the GPU pipeline with a clear error.
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=format=isa 2>&1 | FileCheck %s


// Selection has no GPU lowering yet: a clear error, not host code reading
// device memory.
// CHECK: 'sparsek.select' op has no parallel (GPU) lowering yet; only sparsek.attention and sparsek.decode_attention do
func.func @select(%u: tensor<1x2x?xf32>, %i0: tensor<1x2x?x8xi32>, %g0: tensor<1x2x?x8xf32>,
                  %t0: tensor<1x2x?xf32>) -> tensor<1x2x?x8xi32> {
  %i, %g, %t = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4
      outs(%i0, %g0, %t0 : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>)
      -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>
  return %i : tensor<1x2x?x8xi32>
}
