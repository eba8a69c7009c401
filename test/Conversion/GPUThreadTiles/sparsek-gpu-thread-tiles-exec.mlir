// The tiled loops write every element exactly once: run on the CPU (loops in
// order) with tiles of 3 over an extent of 7, and with one tile larger than
// the extent.
// RUN: sparsek-opt %s --pass-pipeline="builtin.module(func.func(sparsek-gpu-thread-tiles{threads=3}),func.func(lower-affine),convert-scf-to-cf,convert-to-llvm,reconcile-unrealized-casts)" | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s
// RUN: sparsek-opt %s --pass-pipeline="builtin.module(func.func(sparsek-gpu-thread-tiles{threads=16}),func.func(lower-affine),convert-scf-to-cf,convert-to-llvm,reconcile-unrealized-casts)" | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_runner_utils,%mlir_c_runner_utils | FileCheck %s

// CHECK: [0, 1, 2, 3, 4, 5, 6]
// CHECK-NEXT: [100, 101, 102, 103, 104, 105, 106]
func.func private @printMemrefF32(memref<*xf32>)

func.func @main() {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c7 = arith.constant 7 : index
  %c100 = arith.constant 100 : index
  %f = arith.constant -1.0 : f32
  %a = memref.alloc() : memref<2x7xf32>
  scf.for %i = %c0 to %c2 step %c1 {
    scf.for %j = %c0 to %c7 step %c1 {
      memref.store %f, %a[%i, %j] : memref<2x7xf32>
    }
  }
  scf.parallel (%i, %j) = (%c0, %c0) to (%c2, %c7) step (%c1, %c1) {
    %row = arith.muli %i, %c100 : index
    %v = arith.addi %row, %j : index
    // Adds to the -1 fill, plus one: an element written twice would show.
    %old = memref.load %a[%i, %j] : memref<2x7xf32>
    %vi = arith.index_cast %v : index to i64
    %vf = arith.sitofp %vi : i64 to f32
    %one = arith.constant 1.0 : f32
    %s0 = arith.addf %old, %one : f32
    %s = arith.addf %s0, %vf : f32
    memref.store %s, %a[%i, %j] : memref<2x7xf32>
    scf.reduce
  }
  %u = memref.cast %a : memref<2x7xf32> to memref<*xf32>
  call @printMemrefF32(%u) : (memref<*xf32>) -> ()
  memref.dealloc %a : memref<2x7xf32>
  return
}
