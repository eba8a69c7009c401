// Canonical forms of sparsek ops: folds decided by a zero budget or by static
// sizes that never exceed the budget.
// RUN: sparsek-opt %s -canonicalize -split-input-file | FileCheck %s
// RUN: %mlir-opt-sparsek %s -canonicalize -split-input-file | FileCheck %s

// k = 0: the mask is zero and tau is +inf, whatever the input.
// CHECK-LABEL: func.func @mask_zero_budget
// CHECK-SAME: %[[Z:.*]]: tensor<4x?xf32>, %[[P:.*]]: tensor<4x?xf32>, %[[T:.*]]: tensor<4xf32>
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-DAG: %[[INF:.*]] = arith.constant 0x7F800000 : f32
// CHECK-DAG: %[[PF:.*]] = linalg.fill ins(%[[ZERO]] : f32) outs(%[[P]] : tensor<4x?xf32>)
// CHECK-DAG: %[[TF:.*]] = linalg.fill ins(%[[INF]] : f32) outs(%[[T]] : tensor<4xf32>)
// CHECK-NOT: sparsek.mask
// CHECK: return %[[PF]], %[[TF]]
func.func @mask_zero_budget(%z: tensor<4x?xf32>, %p0: tensor<4x?xf32>, %t0: tensor<4xf32>)
    -> (tensor<4x?xf32>, tensor<4xf32>) {
  %p, %tau = sparsek.mask ins(%z : tensor<4x?xf32>) k = 0
               outs(%p0, %t0 : tensor<4x?xf32>, tensor<4xf32>) -> tensor<4x?xf32>, tensor<4xf32>
  return %p, %tau : tensor<4x?xf32>, tensor<4xf32>
}

// -----

// Rows of 8 with k = 8: every unmasked entry gets p = 1, so tau is -inf; the
// mask still depends on which entries are -inf and stays.
// CHECK-LABEL: func.func @mask_row_within_budget
// CHECK-SAME: %[[Z:.*]]: tensor<4x8xf32>, %[[P:.*]]: tensor<4x8xf32>, %[[T:.*]]: tensor<4xf32>
// CHECK: %[[NINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK: %[[TF:.*]] = linalg.fill ins(%[[NINF]] : f32) outs(%[[T]] : tensor<4xf32>)
// CHECK: %[[M:.*]], %{{.*}} = sparsek.mask ins(%[[Z]] : tensor<4x8xf32>) k = 8
// CHECK: return %[[M]], %[[TF]]
func.func @mask_row_within_budget(%z: tensor<4x8xf32>, %p0: tensor<4x8xf32>, %t0: tensor<4xf32>)
    -> (tensor<4x8xf32>, tensor<4xf32>) {
  %p, %tau = sparsek.mask ins(%z : tensor<4x8xf32>) k = 8
               outs(%p0, %t0 : tensor<4x8xf32>, tensor<4xf32>) -> tensor<4x8xf32>, tensor<4xf32>
  return %p, %tau : tensor<4x8xf32>, tensor<4xf32>
}

// -----

// Rows longer than k, or of unknown length, keep their tau.
// CHECK-LABEL: func.func @mask_row_may_exceed_budget
// CHECK-NOT: linalg.fill
// CHECK: %[[M:.*]], %[[TAU:.*]] = sparsek.mask ins(%{{.*}} : tensor<4x?xf32>) k = 8
// CHECK: return %[[M]], %[[TAU]]
func.func @mask_row_may_exceed_budget(%z: tensor<4x?xf32>, %p0: tensor<4x?xf32>, %t0: tensor<4xf32>)
    -> (tensor<4x?xf32>, tensor<4xf32>) {
  %p, %tau = sparsek.mask ins(%z : tensor<4x?xf32>) k = 8
               outs(%p0, %t0 : tensor<4x?xf32>, tensor<4xf32>) -> tensor<4x?xf32>, tensor<4xf32>
  return %p, %tau : tensor<4x?xf32>, tensor<4xf32>
}

// -----

// k = 0 selects nothing: empty index and gate tensors, tau = +inf.
// CHECK-LABEL: func.func @select_zero_budget
// CHECK-SAME: %[[U:.*]]: tensor<?x2x?xf32>, %[[I:.*]]: tensor<?x2x?x0xi32>, %[[G:.*]]: tensor<?x2x?x0xf32>, %[[T:.*]]: tensor<?x2x?xf32>
// CHECK: %[[INF:.*]] = arith.constant 0x7F800000 : f32
// CHECK: %[[TF:.*]] = linalg.fill ins(%[[INF]] : f32) outs(%[[T]] : tensor<?x2x?xf32>)
// CHECK-NOT: sparsek.select
// CHECK: return %[[I]], %[[G]], %[[TF]]
func.func @select_zero_budget(%u: tensor<?x2x?xf32>, %i0: tensor<?x2x?x0xi32>,
                              %g0: tensor<?x2x?x0xf32>, %t0: tensor<?x2x?xf32>)
    -> (tensor<?x2x?x0xi32>, tensor<?x2x?x0xf32>, tensor<?x2x?xf32>) {
  %i, %g, %t = sparsek.select ins(%u : tensor<?x2x?xf32>) k = 0 w = 4
      outs(%i0, %g0, %t0 : tensor<?x2x?x0xi32>, tensor<?x2x?x0xf32>, tensor<?x2x?xf32>)
      -> tensor<?x2x?x0xi32>, tensor<?x2x?x0xf32>, tensor<?x2x?xf32>
  return %i, %g, %t : tensor<?x2x?x0xi32>, tensor<?x2x?x0xf32>, tensor<?x2x?xf32>
}

// -----

// S = 20, w = 4: no query has more than 16 candidates, so with k = 16 tau is
// -inf and attention over the selection needs no gates (all selected gates
// are 1; padding is ignored by attention).
// CHECK-LABEL: func.func @select_within_budget
// CHECK-DAG: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG: %[[NINF:.*]] = arith.constant 0xFF800000 : f32
// CHECK-DAG: %[[TF:.*]] = linalg.fill ins(%[[NINF]] : f32) outs(%{{.*}} : tensor<1x2x20xf32>)
// CHECK-DAG: %[[EMPTY:.*]] = tensor.empty() : tensor<1x2x20x16xf32>
// CHECK-DAG: %[[IDX:.*]], %{{.*}}, %{{.*}} = sparsek.select ins(%{{.*}} : tensor<1x2x20xf32>) k = 16 w = 4
// CHECK: %[[ONES:.*]] = linalg.fill ins(%[[ONE]] : f32) outs(%[[EMPTY]] : tensor<1x2x20x16xf32>)
// CHECK: %[[O:.*]] = sparsek.attention ins(%{{.*}}, %{{.*}}, %{{.*}}, %[[IDX]], %[[ONES]] :
// CHECK: return %[[O]], %[[TF]]
func.func @select_within_budget(%q: tensor<1x4x20x8xf32>, %k: tensor<1x2x20x8xf32>,
                                %v: tensor<1x2x20x8xf32>, %u: tensor<1x2x20xf32>,
                                %i0: tensor<1x2x20x16xi32>, %g0: tensor<1x2x20x16xf32>,
                                %t0: tensor<1x2x20xf32>, %o0: tensor<1x4x20x8xf32>)
    -> (tensor<1x4x20x8xf32>, tensor<1x2x20xf32>) {
  %i, %g, %t = sparsek.select ins(%u : tensor<1x2x20xf32>) k = 16 w = 4
      outs(%i0, %g0, %t0 : tensor<1x2x20x16xi32>, tensor<1x2x20x16xf32>, tensor<1x2x20xf32>)
      -> tensor<1x2x20x16xi32>, tensor<1x2x20x16xf32>, tensor<1x2x20xf32>
  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x20x8xf32>, tensor<1x2x20x8xf32>,
                             tensor<1x2x20x8xf32>, tensor<1x2x20x16xi32>, tensor<1x2x20x16xf32>)
         w = 4 outs(%o0 : tensor<1x4x20x8xf32>) -> tensor<1x4x20x8xf32>
  return %o, %t : tensor<1x4x20x8xf32>, tensor<1x2x20xf32>
}

// -----

// One more key than the budget allows: gates may be fractional; nothing folds.
// Nor when the attention window differs from the selection's.
// CHECK-LABEL: func.func @select_may_exceed_budget
// CHECK-NOT: linalg.fill
// CHECK: %[[I:.*]], %[[G:.*]], %[[T:.*]] = sparsek.select
// CHECK: sparsek.attention ins(%{{.*}}, %{{.*}}, %{{.*}}, %[[I]], %[[G]] :
// CHECK: sparsek.attention ins(%{{.*}}, %{{.*}}, %{{.*}}, %[[I]], %[[G]] :
func.func @select_may_exceed_budget(%q: tensor<1x4x20x8xf32>, %k: tensor<1x2x20x8xf32>,
                                    %v: tensor<1x2x20x8xf32>, %u: tensor<1x2x20xf32>,
                                    %i0: tensor<1x2x20x15xi32>, %g0: tensor<1x2x20x15xf32>,
                                    %t0: tensor<1x2x20xf32>, %o0: tensor<1x4x20x8xf32>)
    -> (tensor<1x4x20x8xf32>, tensor<1x4x20x8xf32>, tensor<1x2x20xf32>) {
  %i, %g, %t = sparsek.select ins(%u : tensor<1x2x20xf32>) k = 15 w = 4
      outs(%i0, %g0, %t0 : tensor<1x2x20x15xi32>, tensor<1x2x20x15xf32>, tensor<1x2x20xf32>)
      -> tensor<1x2x20x15xi32>, tensor<1x2x20x15xf32>, tensor<1x2x20xf32>
  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x20x8xf32>, tensor<1x2x20x8xf32>,
                             tensor<1x2x20x8xf32>, tensor<1x2x20x15xi32>, tensor<1x2x20x15xf32>)
         w = 4 outs(%o0 : tensor<1x4x20x8xf32>) -> tensor<1x4x20x8xf32>
  %o2 = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x20x8xf32>, tensor<1x2x20x8xf32>,
                              tensor<1x2x20x8xf32>, tensor<1x2x20x15xi32>, tensor<1x2x20x15xf32>)
         w = 2 outs(%o0 : tensor<1x4x20x8xf32>) -> tensor<1x4x20x8xf32>
  return %o, %o2, %t : tensor<1x4x20x8xf32>, tensor<1x4x20x8xf32>, tensor<1x2x20xf32>
}

// -----

// k = 0 composite attention is sliding-window attention: the scores go away.
// CHECK-LABEL: func.func @select_attention_zero_budget
// CHECK-SAME: %[[Q:.*]]: tensor<?x4x?x8xbf16>, %[[K:.*]]: tensor<?x2x?x8xbf16>, %[[V:.*]]: tensor<?x2x?x8xbf16>, %[[U:.*]]: tensor<?x2x?xf32>, %[[O:.*]]: tensor<?x4x?x8xbf16>
// CHECK-DAG: %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : index
// CHECK-DAG: %[[B:.*]] = tensor.dim %[[K]], %[[C0]]
// CHECK-DAG: %[[T:.*]] = tensor.dim %[[Q]], %[[C2]]
// CHECK-DAG: %[[I:.*]] = tensor.empty(%[[B]], %[[T]]) : tensor<?x2x?x0xi32>
// CHECK-DAG: %[[G:.*]] = tensor.empty(%[[B]], %[[T]]) : tensor<?x2x?x0xf32>
// CHECK: %[[R:.*]] = sparsek.attention ins(%[[Q]], %[[K]], %[[V]], %[[I]], %[[G]] : {{.*}}) w = 64 scale = 1.250000e-01 outs(%[[O]] : tensor<?x4x?x8xbf16>)
// CHECK: return %[[R]]
func.func @select_attention_zero_budget(%q: tensor<?x4x?x8xbf16>, %k: tensor<?x2x?x8xbf16>,
                                        %v: tensor<?x2x?x8xbf16>, %u: tensor<?x2x?xf32>,
                                        %o0: tensor<?x4x?x8xbf16>) -> tensor<?x4x?x8xbf16> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x?x8xbf16>, tensor<?x2x?x8xbf16>,
                                    tensor<?x2x?x8xbf16>, tensor<?x2x?xf32>)
         k = 0 w = 64 scale = 0.125 outs(%o0 : tensor<?x4x?x8xbf16>) -> tensor<?x4x?x8xbf16>
  return %o : tensor<?x4x?x8xbf16>
}

// -----

// Unused results of these pure ops are erased.
// CHECK-LABEL: func.func @dead_select
// CHECK-NOT: sparsek
// CHECK: return
func.func @dead_select(%u: tensor<1x2x64xf32>, %i0: tensor<1x2x64x8xi32>,
                       %g0: tensor<1x2x64x8xf32>, %t0: tensor<1x2x64xf32>) {
  %i, %g, %t = sparsek.select ins(%u : tensor<1x2x64xf32>) k = 8 w = 4
      outs(%i0, %g0, %t0 : tensor<1x2x64x8xi32>, tensor<1x2x64x8xf32>, tensor<1x2x64xf32>)
      -> tensor<1x2x64x8xi32>, tensor<1x2x64x8xf32>, tensor<1x2x64xf32>
  return
}

// -----

// A size check of a size against itself or of equal constants is dropped;
// one that needs run-time sizes stays.
// CHECK-LABEL: func.func @check_sizes
// CHECK-SAME: %[[A:[^:]*]]: index, %[[B:[^:]*]]: index
// CHECK-NEXT: %[[C4:.*]] = arith.constant 4 : index
// CHECK-NEXT: sparsek.check_sizes %[[A]], %[[B]]
// CHECK-NEXT: sparsek.check_sizes %[[A]], %[[C4]]
// CHECK-NEXT: return
func.func @check_sizes(%a: index, %b: index) {
  %c4 = arith.constant 4 : index
  %c4b = arith.constant 4 : index
  sparsek.check_sizes %a, %b
  sparsek.check_sizes %a, %a
  sparsek.check_sizes %c4, %c4b
  sparsek.check_sizes %a, %c4
  return
}
