// The parallel (GPU) form of the gradient ops (sparsek-lower-to-loops with
// parallel-loops): scf.parallel nests, one iteration per query, key or
// element; sums over queries and tokens added with memref.atomic_rmw.
// RUN: sparsek-opt %s -sparsek-lower-to-loops=parallel-loops=true -split-input-file | FileCheck %s

// attention_grad: the summed destinations zeroed in parallel, then one
// iteration per (b, hq, query block) x query: pass 1 keeps scalars only (no
// Dv-float row), pass 2 adds dkey, dvalue and dgates atomically.
// CHECK-LABEL: func.func @attention_grad
// CHECK-SAME: %[[DQ:[^:]*]]: memref<1x4x?x8xf32>, %[[DK:[^:]*]]: memref<1x2x?x8xf32>, %[[DV:[^:]*]]: memref<1x2x?x8xf32>, %[[DG:[^:]*]]: memref<1x2x?x3xf32>)
// CHECK-NOT: memref.alloc
// CHECK: scf.parallel
// CHECK: memref.store %{{.*}}, %[[DK]]
// CHECK: scf.parallel
// CHECK: memref.store %{{.*}}, %[[DV]]
// CHECK: scf.parallel
// CHECK: memref.store %{{.*}}, %[[DG]]
// CHECK: scf.parallel
// CHECK: scf.parallel
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %[[DQ]]
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DK]]
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DV]]
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DG]]
func.func @attention_grad(%q: memref<1x4x?x8xbf16>, %k: memref<1x2x?x8xbf16>, %v: memref<1x2x?x8xbf16>, %i: memref<1x2x?x3xi32>, %g: memref<1x2x?x3xf32>, %do: memref<1x4x?x8xbf16>, %dq: memref<1x4x?x8xf32>, %dk: memref<1x2x?x8xf32>, %dv: memref<1x2x?x8xf32>, %dg: memref<1x2x?x3xf32>) {
  sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : memref<1x4x?x8xbf16>, memref<1x2x?x8xbf16>, memref<1x2x?x8xbf16>, memref<1x2x?x3xi32>, memref<1x2x?x3xf32>, memref<1x4x?x8xbf16>) w = 2 outs(%dq, %dk, %dv, %dg : memref<1x4x?x8xf32>, memref<1x2x?x8xf32>, memref<1x2x?x8xf32>, memref<1x2x?x3xf32>)
  return
}

// -----

// select_grad: per key its support range of queries by binary search
// (scf.while) into the count's difference array; the two-level scans; per
// query the selected support's gradients scattered atomically; per key the
// mean term from the prefix sums.
// CHECK-LABEL: func.func @select_grad
// CHECK-SAME: %[[DU:[^:]*]]: memref<?x2x?xf32>)
// CHECK-DAG: %[[DIFF:.*]] = memref.alloc(%{{.*}}) : memref<?x?x?xf64>
// CHECK-DAG: %[[LO:.*]] = memref.alloc(%{{.*}}) : memref<?x?x?xi64>
// CHECK: scf.parallel
// CHECK: scf.while
// CHECK: scf.while
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DIFF]]
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DU]]
// CHECK: scf.parallel
// CHECK: memref.load %[[LO]]
// CHECK: memref.store %{{.*}}, %[[DU]]
// CHECK: memref.dealloc %[[DIFF]]
func.func @select_grad(%u: memref<?x2x?xf32>, %i: memref<?x2x?x4xi64>, %t: memref<?x2x?xf32>, %dg: memref<?x2x?x4xf32>, %du: memref<?x2x?xf32>) {
  sparsek.select_grad ins(%u, %i, %t, %dg : memref<?x2x?xf32>, memref<?x2x?x4xi64>, memref<?x2x?xf32>, memref<?x2x?x4xf32>) w = 3 outs(%du : memref<?x2x?xf32>)
  return
}

// -----

// The composite: the chunked (parallel) selection into scratch, then the
// two parts above; with static D = Dv, dkey and dvalue by the key pass:
// each query's log-sum-exp saved, per key the end of its selection range
// (binary searches), then per (key, chunk of queries) sums in vector
// registers added once per element.
// CHECK-LABEL: func.func @select_attention_grad
// CHECK-SAME: %[[DK:[^:]*]]: memref<?x1x?x8xf32>, %[[DV:[^:]*]]: memref<?x1x?x8xf32>, %{{[^:]*}}: memref<?x1x?xf32>)
// CHECK-DAG: %[[IDX:.*]] = memref.alloc(%{{.*}}) : memref<?x?x?x4xi64>
// CHECK: scf.parallel
// CHECK: math.log
// CHECK: %[[END:.*]] = memref.alloc(%{{.*}}) : memref<?x?x?xi64>
// CHECK: scf.while
// CHECK: memref.store %{{.*}}, %[[END]]
// CHECK: scf.parallel
// CHECK: memref.load %[[END]]
// CHECK: vector.reduction <add>
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DK]]
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DV]]
// CHECK: memref.dealloc %[[END]]
// CHECK: scf.while
// CHECK: memref.dealloc %[[IDX]]
func.func @select_attention_grad(%q: memref<?x2x?x8xf32>, %k: memref<?x1x?x8xf32>, %v: memref<?x1x?x8xf32>, %u: memref<?x1x?xf32>, %do: memref<?x2x?x8xf32>, %dq: memref<?x2x?x8xf32>, %dk: memref<?x1x?x8xf32>, %dv: memref<?x1x?x8xf32>, %du: memref<?x1x?xf32>) {
  sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : memref<?x2x?x8xf32>, memref<?x1x?x8xf32>, memref<?x1x?x8xf32>, memref<?x1x?xf32>, memref<?x2x?x8xf32>) k = 4 w = 2 outs(%dq, %dk, %dv, %du : memref<?x2x?x8xf32>, memref<?x1x?x8xf32>, memref<?x1x?x8xf32>, memref<?x1x?xf32>)
  return
}

// -----

// score_grad: dx one iteration per element; dW, dbias and dslope partial
// sums over chunks of tokens, added atomically.
// CHECK-LABEL: func.func @score_grad
// CHECK-SAME: %[[DX:[^:]*]]: memref<2x?x8xf32>, %[[DW:[^:]*]]: memref<3x8xf32>, %[[DB:[^:]*]]: memref<3xf32>, %[[DS:[^:]*]]: memref<3xf32>)
// CHECK: scf.parallel
// CHECK: memref.store %{{.*}}, %[[DX]]
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DW]]
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DB]]
// CHECK: memref.atomic_rmw addf %{{.*}}, %[[DS]]
func.func @score_grad(%x: memref<2x?x8xf16>, %w: memref<3x8xf16>, %du: memref<2x3x?xf32>, %dx: memref<2x?x8xf32>, %dw: memref<3x8xf32>, %db: memref<3xf32>, %ds: memref<3xf32>) {
  sparsek.score_grad ins(%x, %w, %du : memref<2x?x8xf16>, memref<3x8xf16>, memref<2x3x?xf32>) outs(%dx, %dw, %db, %ds : memref<2x?x8xf32>, memref<3x8xf32>, memref<3xf32>, memref<3xf32>)
  return
}
