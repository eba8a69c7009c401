// sparsek ops are inlinable: the pipelines' first step (inline) folds a
// private helper holding one into its caller.
// RUN: sparsek-opt %s -inline | FileCheck %s
// RUN: %mlir-opt-sparsek %s -inline | FileCheck %s

// CHECK-LABEL: func.func @caller
// CHECK-NOT: call
// CHECK: sparsek.select_attention
// CHECK-SAME: k = 4 w = 2
// CHECK: return
// CHECK-NOT: func.func private @helper
func.func @caller(%q: tensor<1x2x8x16xf32>, %k: tensor<1x1x8x16xf32>, %v: tensor<1x1x8x16xf32>,
                  %u: tensor<1x1x8xf32>, %o: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  %r = call @helper(%q, %k, %v, %u, %o) : (tensor<1x2x8x16xf32>, tensor<1x1x8x16xf32>,
      tensor<1x1x8x16xf32>, tensor<1x1x8xf32>, tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32>
  return %r : tensor<1x2x8x16xf32>
}

func.func private @helper(%q: tensor<1x2x8x16xf32>, %k: tensor<1x1x8x16xf32>, %v: tensor<1x1x8x16xf32>,
                          %u: tensor<1x1x8xf32>, %o: tensor<1x2x8x16xf32>) -> tensor<1x2x8x16xf32> {
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<1x2x8x16xf32>, tensor<1x1x8x16xf32>,
         tensor<1x1x8x16xf32>, tensor<1x1x8xf32>) k = 4 w = 2 outs(%o : tensor<1x2x8x16xf32>)
         -> tensor<1x2x8x16xf32>
  return %r : tensor<1x2x8x16xf32>
}
