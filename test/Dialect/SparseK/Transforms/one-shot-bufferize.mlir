// sparsek ops bufferize in place into their destinations: the tensor form
// becomes the buffer form, and destinations are not copied (never read).
// RUN: sparsek-opt %s -one-shot-bufferize="bufferize-function-boundaries" -split-input-file | FileCheck %s
// RUN: %mlir-opt-sparsek %s -one-shot-bufferize="bufferize-function-boundaries" -split-input-file | FileCheck %s

// CHECK-LABEL: func.func @select_then_attention
// CHECK-SAME: %[[Q:[^:]*]]: memref<1x4x?x16xf32{{.*}}>, %[[K:[^:]*]]: memref<1x2x?x16xf32{{.*}}>, %[[V:[^:]*]]: memref<1x2x?x16xf32{{.*}}>, %[[U:[^:]*]]: memref<1x2x?xf32{{.*}}>, %[[O:[^:]*]]: memref<1x4x?x16xf32{{.*}}>
// CHECK: %[[I:.*]] = memref.alloc(%{{.*}}) {{.*}}: memref<1x2x?x8xi32>
// CHECK: %[[G:.*]] = memref.alloc(%{{.*}}) {{.*}}: memref<1x2x?x8xf32>
// CHECK: %[[T:.*]] = memref.alloc(%{{.*}}) {{.*}}: memref<1x2x?xf32>
// CHECK-NOT: memref.copy
// CHECK: sparsek.select ins(%[[U]] : {{.*}}) k = 8 w = 4 outs(%[[I]], %[[G]], %[[T]] :
// CHECK-NOT: memref.copy
// CHECK: sparsek.attention ins(%[[Q]], %[[K]], %[[V]], %[[I]], %[[G]] : {{.*}}) w = 4 outs(%[[O]] :
// CHECK: return %[[O]]
func.func @select_then_attention(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>,
                                 %v: tensor<1x2x?x16xf32>, %u: tensor<1x2x?xf32>,
                                 %o0: tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32> {
  %c2 = arith.constant 2 : index
  %t = tensor.dim %q, %c2 : tensor<1x4x?x16xf32>
  %i0 = tensor.empty(%t) : tensor<1x2x?x8xi32>
  %g0 = tensor.empty(%t) : tensor<1x2x?x8xf32>
  %t0 = tensor.empty(%t) : tensor<1x2x?xf32>
  %i, %g, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4
      outs(%i0, %g0, %t0 : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>)
      -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>
  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>,
                             tensor<1x2x?x16xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>)
         w = 4 outs(%o0 : tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32>
  return %o : tensor<1x4x?x16xf32>
}

// -----

// A destination that is read again afterwards gets a fresh buffer, not the
// caller's (one-shot analysis sees the conflict through the interface).
// CHECK-LABEL: func.func @destination_read_later
// CHECK-SAME: %[[Z:[^:]*]]: memref<8xf32{{.*}}>, %[[P:[^:]*]]: memref<8xf32{{.*}}>
// CHECK: %[[NEW:.*]] = memref.alloc() {{.*}}: memref<8xf32>
// CHECK: sparsek.mask ins(%[[Z]] : {{.*}}) k = 2 outs(%[[NEW]], %{{.*}} :
// CHECK: return %[[NEW]], %[[P]]
func.func @destination_read_later(%z: tensor<8xf32>, %p0: tensor<8xf32>)
    -> (tensor<8xf32>, tensor<8xf32>) {
  %t0 = tensor.empty() : tensor<f32>
  %p, %tau = sparsek.mask ins(%z : tensor<8xf32>) k = 2
               outs(%p0, %t0 : tensor<8xf32>, tensor<f32>) -> tensor<8xf32>, tensor<f32>
  return %p, %p0 : tensor<8xf32>, tensor<8xf32>
}

// -----

// The gradient ops bufferize the same way: four destinations, no copies.
// CHECK-LABEL: func.func @select_attention_grad
// CHECK-SAME: %{{[^:]*}}: memref<1x1x?xf32{{[^>]*}}>>, %{{[^:]*}}: memref<1x2x?x8xf32{{[^>]*}}>>, %[[DQ:[^:]*]]: memref<1x2x?x8xf32{{[^>]*}}>>, %[[DK:[^:]*]]: memref<1x1x?x8xf32{{[^>]*}}>>, %[[DV:[^:]*]]: memref<1x1x?x8xf32{{[^>]*}}>>, %[[DU:[^:]*]]: memref<1x1x?xf32
// CHECK-NOT: memref.copy
// CHECK: sparsek.select_attention_grad ins({{.*}}) k = 2 w = 2 outs(%[[DQ]], %[[DK]], %[[DV]], %[[DU]] :
// CHECK-NOT: memref.copy
// CHECK: return %[[DQ]], %[[DK]], %[[DV]], %[[DU]]
func.func @select_attention_grad(%q: tensor<1x2x?x8xf32>, %k: tensor<1x1x?x8xf32>, %v: tensor<1x1x?x8xf32>, %u: tensor<1x1x?xf32>, %do: tensor<1x2x?x8xf32>, %dq0: tensor<1x2x?x8xf32>, %dk0: tensor<1x1x?x8xf32>, %dv0: tensor<1x1x?x8xf32>, %du0: tensor<1x1x?xf32>) -> (tensor<1x2x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?xf32>) {
  %dq, %dk, %dv, %du = sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : tensor<1x2x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?xf32>, tensor<1x2x?x8xf32>) k = 2 w = 2 outs(%dq0, %dk0, %dv0, %du0 : tensor<1x2x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?xf32>) -> tensor<1x2x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?xf32>
  return %dq, %dk, %dv, %du : tensor<1x2x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?x8xf32>, tensor<1x1x?xf32>
}
