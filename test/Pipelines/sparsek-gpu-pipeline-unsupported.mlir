// Ops without a GPU lowering fail the GPU pipeline with a clear error.
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=format=isa 2>&1 | FileCheck %s


// The standalone mask has no GPU lowering yet (selection computes its own
// thresholds): a clear error, not host code reading device memory.
// CHECK: 'sparsek.mask' op has no parallel (GPU) lowering yet; score, select, attention, select_attention, decode_attention and the gradient ops but mask_grad do
func.func @mask(%z: tensor<?x?xf32>, %p0: tensor<?x?xf32>, %t0: tensor<?xf32>) -> tensor<?x?xf32> {
  %p, %tau = sparsek.mask ins(%z : tensor<?x?xf32>) k = 4 outs(%p0, %t0 : tensor<?x?xf32>, tensor<?xf32>)
      -> tensor<?x?xf32>, tensor<?xf32>
  return %p : tensor<?x?xf32>
}
