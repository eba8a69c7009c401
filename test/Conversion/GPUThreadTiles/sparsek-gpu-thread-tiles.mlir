// RUN: sparsek-opt %s --split-input-file --sparsek-gpu-thread-tiles=threads=64 | FileCheck %s
// RUN: not sparsek-opt %s --split-input-file --sparsek-gpu-thread-tiles=threads=2000 -o /dev/null 2>&1 | FileCheck %s --check-prefix=CHECK-LIMIT

// A single-level loop (what linalg lowers to) gets a one-dimensional tile
// loop over its innermost dimension, bounded where the extent (100) is not a
// multiple of the tile.
// CHECK-DAG: #[[$MIN:.*]] = affine_map<(d0, d1) -> (64, d0 - d1)>
// CHECK-LABEL: func.func @flat
// CHECK-SAME: (%[[A:.*]]: memref<?x4x100xf32>, %[[N:.*]]: index)
// CHECK-DAG: %[[C100:.*]] = arith.constant 100 : index
// CHECK-DAG: %[[C64:.*]] = arith.constant 64 : index
// CHECK: scf.parallel (%[[B:.*]], %[[H:.*]], %[[D0:.*]]) = ({{.*}}) to (%[[N]], %{{.*}}, %[[C100]]) step ({{.*}}, %[[C64]])
// CHECK: %[[EXT:.*]] = affine.min #[[$MIN]](%[[C100]], %[[D0]])
// CHECK: scf.parallel (%[[J:.*]]) = (%{{.*}}) to (%[[EXT]]) step
// CHECK: %[[D:.*]] = arith.addi %[[D0]], %[[J]] : index
// CHECK: memref.store %{{.*}}, %[[A]][%[[B]], %[[H]], %[[D]]]
// CHECK-LIMIT: error: sparsek-gpu-thread-tiles: threads must be in [1, 1024] (a block's thread limit), got 2000
func.func @flat(%a: memref<?x4x100xf32>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c100 = arith.constant 100 : index
  %f = arith.constant 1.0 : f32
  scf.parallel (%b, %h, %d) = (%c0, %c0, %c0) to (%n, %c4, %c100) step (%c1, %c1, %c1) {
    memref.store %f, %a[%b, %h, %d] : memref<?x4x100xf32>
    scf.reduce
  }
  return
}

// -----

// A nest that already has a thread level (the sparsek lowerings') is kept.
// CHECK-LABEL: func.func @two_levels
// CHECK: scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
// CHECK-NEXT: scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
// CHECK-NOT: affine.min
func.func @two_levels(%a: memref<8x32xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c32 = arith.constant 32 : index
  %f = arith.constant 1.0 : f32
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    scf.parallel (%j) = (%c0) to (%c32) step (%c1) {
      memref.store %f, %a[%i, %j] : memref<8x32xf32>
      scf.reduce
    }
    scf.reduce
  }
  return
}
