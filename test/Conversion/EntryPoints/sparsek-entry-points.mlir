// Every public destination-passing function gets `<name>_entry` returning
// the status; with gpu=true it takes the stream first, runs the call on it
// and folds a runtime (CUDA) failure into SPARSEK_ERROR_RUNTIME (5).
// RUN: sparsek-opt %s -sparsek-entry-points | FileCheck %s
// RUN: sparsek-opt %s "-sparsek-entry-points=gpu=true" | FileCheck %s --check-prefix=GPU

// CHECK-LABEL: func.func @layer(
// CHECK-LABEL: func.func @layer_entry(
// CHECK-SAME: %[[A:.*]]: memref<?xf32>) -> i32 attributes {llvm.emit_c_interface}
// CHECK: call @sparsek_clear_status() : () -> ()
// CHECK: call @layer(%[[A]]) : (memref<?xf32>) -> ()
// CHECK: %[[S:.*]] = call @sparsek_status() : () -> i32
// CHECK: return %[[S]] : i32
// CHECK-NOT: func.func @helper_entry
// CHECK-NOT: func.func @returns_entry
// CHECK-NOT: sk_rt
// A user function may start with sparsek_; only the status accessors (which
// the pass creates) get no entry point.
// CHECK-LABEL: func.func @sparsek_layer_entry(
// CHECK-NOT: func.func @sparsek_status_entry
// CHECK-NOT: func.func @sparsek_clear_status_entry

// GPU-LABEL: func.func @layer_entry(
// GPU-SAME: %[[STREAM:.*]]: !llvm.ptr, %[[A:.*]]: memref<?xf32>) -> i32
// The caller's stream is lent even when null (the legacy default stream).
// GPU: call @sk_rt_lend_stream(%[[STREAM]]) : (!llvm.ptr) -> ()
// GPU: call @sparsek_clear_status()
// GPU: call @layer(%[[A]])
// GPU: %[[S:.*]] = call @sparsek_status() : () -> i32
// GPU: %[[NULL:.*]] = llvm.mlir.zero : !llvm.ptr
// GPU: call @sk_rt_set_current_stream(%[[NULL]])
// GPU: %[[CUDA:.*]] = call @sk_rt_get_status() : () -> i32
// GPU-DAG: %[[OK:.*]] = arith.cmpi eq, %[[S]], %{{.*}} : i32
// GPU-DAG: %[[FAILED:.*]] = arith.cmpi ne, %[[CUDA]], %{{.*}} : i32
// GPU: %[[USE:.*]] = arith.andi %[[OK]], %[[FAILED]] : i1
// GPU: %[[R:.*]] = arith.select %[[USE]], %{{.*}}, %[[S]] : i32
// GPU: return %[[R]] : i32
// GPU-DAG: func.func private @sk_rt_lend_stream(!llvm.ptr)
// GPU-DAG: func.func private @sk_rt_set_current_stream(!llvm.ptr)
// GPU-DAG: func.func private @sk_rt_get_status() -> i32
func.func @layer(%a: memref<?xf32>) {
  return
}

func.func private @helper(%a: memref<?xf32>) {
  return
}

func.func @returns(%a: memref<?xf32>) -> memref<?xf32> {
  return %a : memref<?xf32>
}

func.func @sparsek_layer(%a: memref<?xf32>) {
  return
}
