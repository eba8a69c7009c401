// parallel-loops: attention and decode become scf.parallel nests (blocks of
// queries or heads around one iteration per query) with per-iteration stack
// scratch, ready for gpu-map-parallel-loops; sizes are checked outside.
// RUN: sparsek-opt %s -split-input-file "-sparsek-lower-to-loops=parallel-loops query-block=32" | FileCheck %s
// RUN: not sparsek-opt %s -split-input-file "-sparsek-lower-to-loops=parallel-loops query-block=0" 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: query-block must be positive, got 0

// CHECK-LABEL: func.func @attention
// CHECK: %[[C32:.*]] = arith.constant 32 : index
// CHECK: scf.parallel (%[[B:.*]], %[[HQ:.*]], %[[T0:.*]]) = ({{.*}}) to ({{.*}}) step ({{.*}}, %[[C32]])
// CHECK:   scf.parallel (%[[TI:.*]]) = (%{{.*}}) to (%[[C32]])
// CHECK:     %[[T:.*]] = arith.addi %[[T0]], %[[TI]]
// CHECK:     scf.if
// CHECK:       memref.alloca() : memref<16xf32>
// CHECK-NOT: memref.alloc(
// CHECK-NOT: memref.dealloc
func.func @attention(%q: memref<1x4x?x16xf32>, %k: memref<1x2x?x16xf32>, %v: memref<1x2x?x16xf32>,
                     %i: memref<1x2x?x4xi32>, %g: memref<1x2x?x4xf32>, %o: memref<1x4x?x16xf32>) {
  sparsek.attention ins(%q, %k, %v, %i, %g : memref<1x4x?x16xf32>, memref<1x2x?x16xf32>,
                        memref<1x2x?x16xf32>, memref<1x2x?x4xi32>, memref<1x2x?x4xf32>)
      w = 4 outs(%o : memref<1x4x?x16xf32>)
  return
}

// -----

// The decode kernel guards the cache itself: no host scan of pool counts.
// CHECK-LABEL: func.func @decode
// CHECK-NOT: memref.load %{{.*}} : memref<?x2xi32>
// CHECK: scf.parallel (%[[B:.*]], %[[H0:.*]]) = ({{.*}}) to ({{.*}}) step ({{.*}}, %{{.*}})
// CHECK:   scf.parallel
// CHECK:     memref.alloca() : memref<16xf32>
// CHECK:     %[[N:.*]] = memref.load %{{.*}} : memref<?x2xi32>
// CHECK:     arith.maxsi
// CHECK:     arith.minsi
func.func @decode(%q: memref<?x4x16xf32>, %kc: memref<?x2x12x16xf32>, %vc: memref<?x2x12x16xf32>,
                  %sc: memref<?x2x12xf32>, %tau: memref<?x2xf32>, %cnt: memref<?x2xi32>,
                  %pos: memref<?xi64>, %o: memref<?x4x16xf32>) {
  sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : memref<?x4x16xf32>,
      memref<?x2x12x16xf32>, memref<?x2x12x16xf32>, memref<?x2x12xf32>, memref<?x2xf32>,
      memref<?x2xi32>, memref<?xi64>) k = 8 w = 4 outs(%o : memref<?x4x16xf32>)
  return
}
