// Bufferized functions stop returning their argument buffers, public entry
// points included; call sites use the argument instead.
// RUN: sparsek-opt %s -sparsek-drop-returned-arguments | FileCheck %s
// RUN: %mlir-opt-sparsek %s -p 'builtin.module(sparsek-drop-returned-arguments)' | FileCheck %s

// CHECK-LABEL: func.func @entry
// CHECK-SAME: (%[[A:.*]]: memref<4xf32>, %[[B:.*]]: memref<?xf32>) -> memref<2xf32>
// CHECK: %[[N:.*]] = memref.alloc() : memref<2xf32>
// CHECK: return %[[N]] : memref<2xf32>
func.func @entry(%a: memref<4xf32>, %b: memref<?xf32>)
    -> (memref<4xf32>, memref<2xf32>, memref<4xf32, strided<[?], offset: ?>>) {
  %n = memref.alloc() : memref<2xf32>
  %c = memref.cast %a : memref<4xf32> to memref<4xf32, strided<[?], offset: ?>>
  return %a, %n, %c : memref<4xf32>, memref<2xf32>, memref<4xf32, strided<[?], offset: ?>>
}

// CHECK-LABEL: func.func private @helper
// CHECK-SAME: (%{{.*}}: memref<4xf32>){{ *}}{
func.func private @helper(%a: memref<4xf32>) -> memref<4xf32> {
  return %a : memref<4xf32>
}

// CHECK-LABEL: func.func @caller
// CHECK-SAME: (%[[X:.*]]: memref<4xf32>) -> f32
// CHECK: call @helper(%[[X]]) : (memref<4xf32>) -> ()
// CHECK: memref.load %[[X]]
func.func @caller(%x: memref<4xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %r = call @helper(%x) : (memref<4xf32>) -> memref<4xf32>
  %v = memref.load %r[%c0] : memref<4xf32>
  return %v : f32
}

// A destination written in a loop, under a condition, comes back through the
// loop's and the if's results: still the argument, dropped.
// CHECK-LABEL: func.func @loop_entry
// CHECK-SAME: (%[[O:.*]]: memref<8xf32>, %[[N:.*]]: index){{ *}}{
// CHECK: scf.for
// CHECK: scf.if
// CHECK: memref.store %{{.*}}, %[[O]]
// CHECK: return{{$}}
func.func @loop_entry(%o: memref<8xf32>, %n: index) -> memref<8xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %one = arith.constant 1.0 : f32
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %o) -> (memref<8xf32>) {
    %small = arith.cmpi slt, %i, %c4 : index
    %next = scf.if %small -> (memref<8xf32>) {
      memref.store %one, %acc[%i] : memref<8xf32>
      scf.yield %acc : memref<8xf32>
    } else {
      scf.yield %acc : memref<8xf32>
    }
    scf.yield %next : memref<8xf32>
  }
  return %r : memref<8xf32>
}
