// sparsek.mask becomes, per row of the last axis, a loop that feeds every
// score to the incremental exact tau solver (two scratch min-heaps of n
// scores allocated once per op, f64 sum and tau, heaps as scf.while loops),
// then a loop writing clip(z - tau, 0, 1). NaN/+inf scores and disagreeing
// dynamic sizes go to the status word.
// RUN: sparsek-opt %s -sparsek-lower-to-loops -split-input-file | FileCheck %s

// CHECK-LABEL: func.func @mask_rows
// CHECK-SAME: %[[Z:[^:]*]]: memref<?x8x?xf32>, %[[P:[^:]*]]: memref<?x8x?xf32>, %[[TAU:[^:]*]]: memref<?x8xf32>
// The dynamic batch and row sizes of input, mask and tau must agree.
// CHECK: memref.dim %[[Z]]
// CHECK: memref.dim %[[P]]
// CHECK: memref.dim %[[TAU]]
// CHECK: %[[BAD:.*]] = arith.xori %[[SHAPES:.*]], %{{.*}} : i1
// CHECK: scf.if %[[BAD]] {
// CHECK: memref.get_global @__sparsek_status
// CHECK: arith.constant 2 : i32
// CHECK: scf.if %[[SHAPES]] {
// CHECK: %[[N:.*]] = memref.dim %[[Z]], %{{.*}} : memref<?x8x?xf32>
// CHECK: %[[UP:.*]] = memref.alloc(%[[N]]) : memref<?xf32>
// CHECK: %[[MID:.*]] = memref.alloc(%[[N]]) : memref<?xf32>
// CHECK: scf.for %[[I0:[^ ]*]] =
// CHECK: scf.for %[[I1:[^ ]*]] =
// Solver state: count, |UPPER|, |MIDDLE|, f64 sum of MIDDLE, f64 tau (-inf).
// CHECK: %[[NINF:.*]] = arith.constant 0xFFF0000000000000 : f64
// CHECK: %[[ROW:.*]]:5 = scf.for %[[J:[^ ]*]] = %{{.*}} to %[[N]] step %{{.*}} iter_args({{.*}}, %[[T0:[^ ]*]] = %[[NINF]]) -> (index, index, index, f64, f64) {
// CHECK: %[[ZJ:.*]] = memref.load %[[Z]][%[[I0]], %[[I1]], %[[J]]] : memref<?x8x?xf32>
// NaN and +inf are invalid scores (status 1); -inf is masked.
// CHECK: %[[VALID:.*]] = arith.cmpf olt, %[[ZJ]], %{{.*}} : f32
// CHECK: arith.constant 1 : i32
// CHECK: %[[LIVE:.*]] = arith.cmpf ogt, %[[ZJ]], %{{.*}} : f32
// CHECK: %[[CAND:.*]] = arith.andi %[[VALID]], %[[LIVE]] : i1
// CHECK: scf.if %[[CAND]]
// CHECK: %[[Z64:.*]] = arith.extf %[[ZJ]] : f32 to f64
// CHECK: arith.cmpf ogt, %[[Z64]], %[[T0]] : f64
// Sift-up into UPPER, or into MIDDLE with the f64 sum.
// CHECK: scf.while
// CHECK: memref.load %[[UP]]
// CHECK: scf.while
// CHECK: memref.load %[[MID]]
// CHECK: arith.addf %{{.*}}, %[[Z64]] : f64
// Over budget: walk the breakpoints to the root of U + sum - M x = k.
// CHECK: scf.while
// CHECK: arith.divf %{{.*}}, %{{.*}} : f64
// CHECK: arith.maximumf
// CHECK: scf.condition
// CHECK: scf.for %[[J2:[^ ]*]] = %{{.*}} to %[[N]]
// CHECK: %[[ZW:.*]] = memref.load %[[Z]][%[[I0]], %[[I1]], %[[J2]]]
// CHECK: %[[ZW64:.*]] = arith.extf %[[ZW]] : f32 to f64
// CHECK: %[[D:.*]] = arith.subf %[[ZW64]], %[[ROW]]#4 : f64
// CHECK: %[[LO:.*]] = arith.maxnumf %[[D]], %{{.*}} : f64
// CHECK: %[[HI:.*]] = arith.minnumf %[[LO]], %{{.*}} : f64
// CHECK: %[[PV:.*]] = arith.truncf %[[HI]] : f64 to f32
// CHECK: memref.store %[[PV]], %[[P]][%[[I0]], %[[I1]], %[[J2]]]
// CHECK: %[[TV:.*]] = arith.truncf %[[ROW]]#4 : f64 to f32
// CHECK: memref.store %[[TV]], %[[TAU]][%[[I0]], %[[I1]]]
// CHECK: memref.dealloc %[[UP]]
// CHECK: memref.dealloc %[[MID]]
// CHECK-NOT: sparsek.mask
func.func @mask_rows(%z: memref<?x8x?xf32>, %p: memref<?x8x?xf32>, %t: memref<?x8xf32>) {
  sparsek.mask ins(%z : memref<?x8x?xf32>) k = 4 outs(%p, %t : memref<?x8x?xf32>, memref<?x8xf32>)
  return
}

// -----

// k = 0: no solver and no scratch; tau = +inf and p = 0, scores still checked.
// CHECK-LABEL: func.func @mask_budget_zero
// CHECK-SAME: %[[Z:[^:]*]]: memref<16xf32>, %[[P:[^:]*]]: memref<16xf32>, %[[TAU:[^:]*]]: memref<f32>
// CHECK-NOT: memref.alloc
// CHECK: scf.for
// CHECK: arith.constant 1 : i32
// CHECK: %[[INF:.*]] = arith.constant 0x7FF0000000000000 : f64
// CHECK: scf.for
// CHECK: memref.store %{{.*}}, %[[P]]
// CHECK: %[[TV:.*]] = arith.truncf %[[INF]] : f64 to f32
// CHECK: memref.store %[[TV]], %[[TAU]][] : memref<f32>
// CHECK-NOT: sparsek.mask
func.func @mask_budget_zero(%z: memref<16xf32>, %p: memref<16xf32>, %t: memref<f32>) {
  sparsek.mask ins(%z : memref<16xf32>) k = 0 outs(%p, %t : memref<16xf32>, memref<f32>)
  return
}
