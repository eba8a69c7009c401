// sparsek.select becomes one pass per (b, h) row, linear in T: a single
// candidate loop carries the exact tau state (count, |UPPER|, |MIDDLE|, f64
// sum, f64 tau) and the top-k pool size, and emits query j - (S - T - w) as
// soon as candidate j has joined. The pool is a scratch heap (weakest at the
// root) with its positions kept sorted; heaps are scf.while sift loops.
// Scratch is allocated once per op. Bad sizes and scores go to the status word.
// RUN: sparsek-opt %s -sparsek-lower-to-loops -split-input-file | FileCheck %s

// CHECK-LABEL: func.func @select_dynamic
// CHECK-SAME: %[[U:[^:]*]]: memref<2x4x?xf32>, %[[IDX:[^:]*]]: memref<2x4x?x16xi64>, %[[G:[^:]*]]: memref<2x4x?x16xf32>, %[[TAU:[^:]*]]: memref<2x4x?xf32>
// The dynamic T of the three results must agree (status 2) ...
// CHECK: memref.dim %[[IDX]]
// CHECK: memref.dim %[[G]]
// CHECK: memref.dim %[[TAU]]
// CHECK: %[[BAD:.*]] = arith.xori %[[SHAPES:.*]], %{{.*}} : i1
// CHECK: scf.if %[[BAD]] {
// CHECK: arith.constant 2 : i32
// ... and not exceed S (status 3).
// CHECK: %[[S:.*]] = memref.dim %[[U]], %{{.*}} : memref<2x4x?xf32>
// CHECK: %[[T:.*]] = memref.dim %[[TAU]], %{{.*}} : memref<2x4x?xf32>
// CHECK: %[[FITS:.*]] = arith.cmpi ule, %[[T]], %[[S]] : index
// CHECK: %[[BAD2:.*]] = arith.xori %[[FITS]], %{{.*}} : i1
// CHECK: scf.if %[[BAD2]] {
// CHECK: arith.constant 3 : i32
// CHECK: %[[OK:.*]] = arith.andi %[[SHAPES]], %[[FITS]] : i1
// CHECK: scf.if %[[OK]] {
// Scratch, once per op: the pool (scores, positions, sorted positions) holds
// min(S, k) entries, the tau heaps S scores each.
// CHECK: %[[CAP:.*]] = arith.minui %[[S]], %{{.*}} : index
// CHECK: %[[PSCORE:.*]] = memref.alloc(%[[CAP]]) : memref<?xf32>
// CHECK: %[[PPOS:.*]] = memref.alloc(%[[CAP]]) : memref<?xindex>
// CHECK: %[[SORTED:.*]] = memref.alloc(%[[CAP]]) : memref<?xindex>
// CHECK: %[[UP:.*]] = memref.alloc(%[[S]]) : memref<?xf32>
// CHECK: %[[MID:.*]] = memref.alloc(%[[S]]) : memref<?xf32>
// CHECK: scf.for %[[B:[^ ]*]] =
// CHECK: scf.for %[[H:[^ ]*]] =
// Queries before the first candidate: padding and tau = -inf.
// CHECK: %[[NINF:.*]] = arith.constant 0xFFF0000000000000 : f64
// CHECK: scf.for %[[Q0:[^ ]*]] =
// CHECK: scf.for %[[E0:[^ ]*]] =
// CHECK: %[[PAD:.*]] = arith.constant -1 : i64
// CHECK: memref.store %[[PAD]], %[[IDX]][%[[B]], %[[H]], %[[Q0]], %[[E0]]]
// CHECK: %[[NINF32:.*]] = arith.truncf %[[NINF]] : f64 to f32
// CHECK: memref.store %[[NINF32]], %[[TAU]][%[[B]], %[[H]], %[[Q0]]]
// The candidate loop over j < S - w.
// CHECK: scf.for %[[J:[^ ]*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args({{.*}}, %[[TAUJ:[^ ]*]] = %[[NINF]], %[[SIZE:[^ ]*]] = %{{.*}}) -> (index, index, index, f64, f64, index) {
// CHECK: %[[Z:.*]] = memref.load %[[U]][%[[B]], %[[H]], %[[J]]]
// CHECK: %[[VALID:.*]] = arith.cmpf olt, %[[Z]], %{{.*}} : f32
// CHECK: arith.constant 1 : i32
// CHECK: %[[LIVE:.*]] = arith.cmpf ogt, %[[Z]], %{{.*}} : f32
// CHECK: %[[CAND:.*]] = arith.andi %[[VALID]], %[[LIVE]] : i1
// CHECK: scf.if %[[CAND]]
// Exact tau in f64: UPPER / MIDDLE pushes, then the breakpoint walk.
// CHECK: %[[Z64:.*]] = arith.extf %[[Z]] : f32 to f64
// CHECK: arith.cmpf ogt, %[[Z64]], %[[TAUJ]] : f64
// CHECK: scf.while
// CHECK: memref.load %[[UP]]
// CHECK: scf.while
// CHECK: memref.load %[[MID]]
// CHECK: arith.addf %{{.*}}, %[[Z64]] : f64
// CHECK: scf.while
// CHECK: arith.divf %{{.*}}, %{{.*}} : f64
// CHECK: scf.condition
// The pool: append while not full, else replace the weakest if beaten.
// CHECK: %[[NOTFULL:.*]] = arith.cmpi ult, %[[SIZE]], %{{.*}} : index
// CHECK: scf.if %[[NOTFULL]]
// CHECK: memref.store %[[J]], %[[SORTED]][%[[SIZE]]]
// CHECK: scf.while
// CHECK: memref.load %[[PSCORE]]
// CHECK: } else {
// CHECK: %[[WEAK:.*]] = memref.load %[[PSCORE]]
// CHECK: %[[BEATS:.*]] = arith.cmpf ogt, %[[Z]], %[[WEAK]] : f32
// CHECK: scf.if %[[BEATS]] {
// Binary search for the evicted position, then the tail moves left.
// CHECK: arith.shrui
// CHECK: memref.load %[[SORTED]]
// CHECK: scf.for
// CHECK: memref.store %{{.*}}, %[[SORTED]]
// Query j - (S - T - w) is complete: copy the sorted positions, gates in f64.
// CHECK: %[[DONE:.*]] = arith.cmpi sge, %[[J]], %{{.*}} : index
// CHECK: scf.if %[[DONE]] {
// CHECK: %[[Q:.*]] = arith.subi %[[J]], %{{.*}} : index
// CHECK: scf.for %[[E:[^ ]*]] =
// CHECK: %[[POS:.*]] = memref.load %[[SORTED]][%[[E]]] : memref<?xindex>
// CHECK: %[[UPOS:.*]] = memref.load %[[U]][%[[B]], %[[H]], %[[POS]]]
// CHECK: %[[UPOS64:.*]] = arith.extf %[[UPOS]] : f32 to f64
// CHECK: arith.subf %[[UPOS64]], %{{.*}} : f64
// CHECK: %[[POS64:.*]] = arith.index_cast %[[POS]] : index to i64
// CHECK: memref.store %[[POS64]], %[[IDX]][%[[B]], %[[H]], %[[Q]], %[[E]]]
// CHECK: memref.store %{{.*}}, %[[G]][%[[B]], %[[H]], %[[Q]], %[[E]]]
// CHECK: memref.store %{{.*}}, %[[TAU]][%[[B]], %[[H]], %[[Q]]]
// Window-only positions are only checked.
// CHECK: scf.for
// CHECK: memref.load %[[U]]
// CHECK: arith.constant 1 : i32
// CHECK: memref.dealloc %[[PSCORE]]
// CHECK: memref.dealloc %[[PPOS]]
// CHECK: memref.dealloc %[[SORTED]]
// CHECK: memref.dealloc %[[UP]]
// CHECK: memref.dealloc %[[MID]]
// CHECK-NOT: sparsek.select
func.func @select_dynamic(%u: memref<2x4x?xf32>, %i: memref<2x4x?x16xi64>, %g: memref<2x4x?x16xf32>, %t: memref<2x4x?xf32>) {
  sparsek.select ins(%u : memref<2x4x?xf32>) k = 16 w = 8 outs(%i, %g, %t : memref<2x4x?x16xi64>, memref<2x4x?x16xf32>, memref<2x4x?xf32>)
  return
}

// -----

// k = 0 (sliding window only): no scratch; every score is checked and every
// query gets tau = +inf.
// CHECK-LABEL: func.func @select_window_only
// CHECK-SAME: %[[U:[^:]*]]: memref<1x2x?xf32>, %[[IDX:[^:]*]]: memref<1x2x?x0xi32>, %[[G:[^:]*]]: memref<1x2x?x0xf32>, %[[TAU:[^:]*]]: memref<1x2x?xf32>
// CHECK-NOT: memref.alloc
// CHECK: scf.for %[[B:[^ ]*]] =
// CHECK: scf.for %[[H:[^ ]*]] =
// CHECK: scf.for
// CHECK: memref.load %[[U]]
// CHECK: arith.constant 1 : i32
// CHECK: %[[INF:.*]] = arith.constant 0x7F800000 : f32
// CHECK: scf.for %[[Q:[^ ]*]] =
// CHECK: memref.store %[[INF]], %[[TAU]][%[[B]], %[[H]], %[[Q]]]
// CHECK-NOT: sparsek.select
func.func @select_window_only(%u: memref<1x2x?xf32>, %i: memref<1x2x?x0xi32>, %g: memref<1x2x?x0xf32>, %t: memref<1x2x?xf32>) {
  sparsek.select ins(%u : memref<1x2x?xf32>) k = 0 w = 4 outs(%i, %g, %t : memref<1x2x?x0xi32>, memref<1x2x?x0xf32>, memref<1x2x?xf32>)
  return
}

// -----

// i32 indices are narrowed from the index positions.
// CHECK-LABEL: func.func @select_i32
// CHECK-SAME: %[[IDX:[^:]*]]: memref<1x1x8x4xi32>
// CHECK: arith.constant -1 : i32
// CHECK: %[[POS32:.*]] = arith.index_cast %{{.*}} : index to i32
// CHECK: memref.store %[[POS32]], %[[IDX]]
// CHECK-NOT: sparsek.select
func.func @select_i32(%u: memref<1x1x8xf32>, %i: memref<1x1x8x4xi32>, %g: memref<1x1x8x4xf32>, %t: memref<1x1x8xf32>) {
  sparsek.select ins(%u : memref<1x1x8xf32>) k = 4 w = 2 outs(%i, %g, %t : memref<1x1x8x4xi32>, memref<1x1x8x4xf32>, memref<1x1x8xf32>)
  return
}
