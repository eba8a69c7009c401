// The pass lowers buffer-form ops only, and says what to run first
// otherwise; every module it touches gets the status word and accessors.
// RUN: sparsek-opt %s -sparsek-lower-to-loops -split-input-file -verify-diagnostics | FileCheck %s
// RUN: %mlir-opt-sparsek %s -p 'builtin.module(sparsek-lower-to-loops)' -split-input-file -verify-diagnostics | FileCheck %s

// CHECK: memref.global "private" @__sparsek_status : memref<i32> = dense<0>
// CHECK-LABEL: func.func @sparsek_status() -> i32
// CHECK: %[[W:.*]] = memref.get_global @__sparsek_status : memref<i32>
// CHECK: %[[V:.*]] = memref.load %[[W]][] : memref<i32>
// CHECK: return %[[V]] : i32
// CHECK-LABEL: func.func @sparsek_clear_status()
// CHECK: memref.store %{{.*}}, %{{.*}}[] : memref<i32>
// CHECK-LABEL: func.func @no_sparsek_ops
func.func @no_sparsek_ops() {
  return
}

// -----

func.func @tensor_form(%z: tensor<8xf32>, %p: tensor<8xf32>, %t: tensor<f32>) -> tensor<8xf32> {
  // expected-error@+1 {{is in tensor form; sparsek-lower-to-loops lowers the buffer form: run one-shot-bufferize first (sparsek-cpu-pipeline does)}}
  %m, %tau = sparsek.mask ins(%z : tensor<8xf32>) k = 2 outs(%p, %t : tensor<8xf32>, tensor<f32>) -> tensor<8xf32>, tensor<f32>
  return %m : tensor<8xf32>
}

// -----

// The composite op is lowered fused when it reaches the pass whole; its
// fused form keeps per-query scratch on the stack, so Dv must be static.
func.func @composite_dynamic_dv(%q: memref<1x2x8x4xf32>, %k: memref<1x2x8x4xf32>,
                                %v: memref<1x2x8x?xf32>, %u: memref<1x2x8xf32>,
                                %o: memref<1x2x8x?xf32>) {
  // expected-error@+1 {{needs a static value head dimension Dv for the fused lowering: its per-query scratch lives on the stack}}
  sparsek.select_attention ins(%q, %k, %v, %u : memref<1x2x8x4xf32>, memref<1x2x8x4xf32>,
                               memref<1x2x8x?xf32>, memref<1x2x8xf32>)
      k = 2 w = 2 outs(%o : memref<1x2x8x?xf32>)
  return
}

// -----

// A size check becomes a status check in place: SPARSEK_ERROR_SHAPE_MISMATCH
// (2) when the sizes differ, also with parallel-loops (host code).
// CHECK-LABEL: func.func @check_sizes
// CHECK-SAME: %[[A:[^:]*]]: index, %[[B:[^:]*]]: index
// CHECK: %[[SAME:.*]] = arith.cmpi eq, %[[A]], %[[B]] : index
// CHECK: %[[BAD:.*]] = arith.xori %[[SAME]], %{{.*}} : i1
// CHECK: scf.if %[[BAD]] {
// CHECK: %[[MISMATCH:.*]] = arith.constant 2 : i32
// CHECK: arith.select %{{.*}}, %[[MISMATCH]], %{{.*}} : i32
// CHECK-NOT: sparsek.check_sizes
func.func @check_sizes(%a: index, %b: index) {
  sparsek.check_sizes %a, %b
  return
}
