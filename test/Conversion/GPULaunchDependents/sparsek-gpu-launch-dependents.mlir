// sparsek-gpu-launch-dependents: every kernel waits for the grids before it
// (griddepcontrol.wait) before anything else, and each module with a kernel
// gets the external marker global the runtime looks up before launching its
// kernels with programmatic stream serialization. Device functions
// that are not kernels, and modules without kernels, are left alone.
// RUN: sparsek-opt %s -sparsek-gpu-launch-dependents | FileCheck %s
// Idempotent: a second run adds no second wait or global.
// RUN: sparsek-opt %s -sparsek-gpu-launch-dependents -sparsek-gpu-launch-dependents | FileCheck %s --check-prefix=TWICE

module attributes {gpu.container_module} {
  // CHECK-LABEL: gpu.module @k
  // CHECK: llvm.mlir.global external constant @__sparsek_waits_on_grid(1 : i32) {addr_space = 1 : i32, alignment = 4 : i64} : i32
  // CHECK: gpu.func @k(%[[A:.*]]: memref<?xf32>) kernel
  // CHECK-NEXT: nvvm.griddepcontrol wait
  // CHECK-NOT: launch_dependents
  // CHECK-NEXT: %[[I:.*]] = gpu.block_id x
  // CHECK: gpu.func @helper
  // CHECK-NOT: griddepcontrol
  // CHECK: gpu.return
  // TWICE: llvm.mlir.global external constant @__sparsek_waits_on_grid
  // TWICE-NOT: llvm.mlir.global
  // TWICE: nvvm.griddepcontrol wait
  // TWICE-NEXT: gpu.block_id
  gpu.module @k {
    gpu.func @k(%a: memref<?xf32>) kernel {
      %i = gpu.block_id x
      %v = arith.constant 1.0 : f32
      memref.store %v, %a[%i] : memref<?xf32>
      gpu.return
    }
    gpu.func @helper() {
      gpu.return
    }
  }
  // CHECK-LABEL: gpu.module @none
  // CHECK-NOT: __sparsek_waits_on_grid
  // CHECK: gpu.func @only_helper
  gpu.module @none {
    gpu.func @only_helper() {
      gpu.return
    }
  }
}
