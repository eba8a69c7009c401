// sparsek.decode_attention becomes, after a scan that validates the cache
// state, an online softmax per (b, h, g) over the pool slots [0, count) with
// gate clip(score - tau, 0, 1) and the window ring slots k + (p mod w).
// RUN: sparsek-opt %s -sparsek-lower-to-loops -split-input-file | FileCheck %s

// CHECK-LABEL: func.func @decode_bf16
// CHECK-SAME: %[[Q:[^:]*]]: memref<?x8x64xbf16>, %[[KC:[^:]*]]: memref<?x2x48x64xbf16>, %[[VC:[^:]*]]: memref<?x2x48x32xbf16>, %[[SC:[^:]*]]: memref<?x2x48xf32>, %[[TAU:[^:]*]]: memref<?x2xf32>, %[[CNT:[^:]*]]: memref<?x2xi32>, %[[POS:[^:]*]]: memref<?xi64>, %[[O:[^:]*]]: memref<?x8x32xbf16>
// CHECK: %[[B:.*]] = memref.dim %[[Q]], %{{.*}} : memref<?x8x64xbf16>
// Every operand's dynamic B must agree with the query's.
// CHECK: memref.dim %[[KC]]
// CHECK: memref.dim %[[VC]]
// CHECK: memref.dim %[[SC]]
// CHECK: memref.dim %[[TAU]]
// CHECK: memref.dim %[[CNT]]
// CHECK: memref.dim %[[POS]]
// CHECK: memref.dim %[[O]]
// CHECK: %[[BAD:.*]] = arith.xori %[[SHAPES:.*]], %{{.*}} : i1
// CHECK: scf.if %[[BAD]] {
// CHECK: arith.constant 2 : i32
// The scan runs only once the sizes agree, and reads pool scores only below
// a count known to fit in [0, k].
// CHECK: %[[SCAN:.*]]:2 = scf.if %[[SHAPES]] -> (i1, i1) {
// CHECK: %[[KB:.*]] = arith.constant 32 : index
// CHECK: scf.for %[[SB:[^ ]*]] = %{{.*}} to %[[B]] step %{{.*}} iter_args({{.*}}) -> (i1, i1) {
// CHECK: %[[P0:.*]] = memref.load %[[POS]][%[[SB]]] : memref<?xi64>
// CHECK: %[[P:.*]] = arith.index_cast %[[P0]] : i64 to index
// CHECK: arith.cmpi sge, %[[P]]
// CHECK: scf.for %[[SH:[^ ]*]] =
// CHECK: %[[N0:.*]] = memref.load %[[CNT]][%[[SB]], %[[SH]]] : memref<?x2xi32>
// CHECK: %[[N:.*]] = arith.index_cast %[[N0]] : i32 to index
// CHECK: arith.cmpi sge, %[[N]]
// CHECK: arith.cmpi sle, %[[N]], %[[KB]] : index
// CHECK: %[[COUNTOK:.*]] = arith.andi
// CHECK: %[[T:.*]] = memref.load %[[TAU]][%[[SB]], %[[SH]]]
// CHECK: %[[TOK:.*]] = arith.cmpf ord, %[[T]], %[[T]] : f32
// CHECK: %[[BOUND:.*]] = arith.select %[[COUNTOK]], %[[N]], %{{.*}} : index
// CHECK: scf.for %[[SS:[^ ]*]] = %{{.*}} to %[[BOUND]] step %{{.*}} iter_args(%{{.*}} = %[[TOK]]) -> (i1) {
// CHECK: %[[S:.*]] = memref.load %[[SC]][%[[SB]], %[[SH]], %[[SS]]]
// NaN and +inf are invalid scores; -inf masks.
// CHECK: arith.cmpf olt, %[[S]], %{{.*}} : f32
// CHECK: } else {
// CHECK: %[[BAD2:.*]] = arith.xori %[[SCAN]]#0
// CHECK: scf.if %[[BAD2]] {
// CHECK: arith.constant 4 : i32
// CHECK: %[[BAD3:.*]] = arith.xori %[[SCAN]]#1
// CHECK: scf.if %[[BAD3]] {
// CHECK: arith.constant 1 : i32
// CHECK: %[[OK0:.*]] = arith.andi %[[SHAPES]], %[[SCAN]]#0 : i1
// CHECK: %[[OK:.*]] = arith.andi %[[OK0]], %[[SCAN]]#1 : i1
// CHECK: scf.if %[[OK]] {
// CHECK: %[[ACC:.*]] = memref.alloc() : memref<32xf32>
// CHECK: scf.for %[[BI:[^ ]*]] = %{{.*}} to %[[B]] step
// CHECK: scf.for %[[H:[^ ]*]] =
// CHECK: scf.for %[[G:[^ ]*]] =
// CHECK: %[[HQ0:.*]] = arith.muli %[[H]], %[[C4:.*]] : index
// CHECK: %[[HQ:.*]] = arith.addi %[[HQ0]], %[[G]] : index
// Pool slots [0, count) with gate clip(score - tau, 0, 1).
// CHECK: %[[CNT0:.*]] = memref.load %[[CNT]][%[[BI]], %[[H]]] : memref<?x2xi32>
// CHECK: %[[COUNT:.*]] = arith.index_cast %[[CNT0]] : i32 to index
// CHECK: %[[TAU32:.*]] = memref.load %[[TAU]][%[[BI]], %[[H]]]
// CHECK: %[[TAUV:.*]] = arith.extf %[[TAU32]] : f32 to f64
// CHECK: %[[POOL:.*]]:2 = scf.for %[[SLOT:[^ ]*]] = %{{.*}} to %[[COUNT]] step %{{.*}} iter_args({{.*}}) -> (f32, f32) {
// CHECK: %[[SCORE:.*]] = memref.load %[[SC]][%[[BI]], %[[H]], %[[SLOT]]]
// CHECK: %[[S64:.*]] = arith.extf %[[SCORE]] : f32 to f64
// CHECK: %[[DIFF:.*]] = arith.subf %[[S64]], %[[TAUV]] : f64
// CHECK: %[[LOW:.*]] = arith.maxnumf %[[DIFF]], %{{.*}} : f64
// CHECK: %[[CLIP:.*]] = arith.minnumf %[[LOW]], %{{.*}} : f64
// CHECK: %[[GATE:.*]] = arith.truncf %[[CLIP]] : f64 to f32
// CHECK: memref.load %[[Q]][%[[BI]], %[[HQ]], %{{.*}}] : memref<?x8x64xbf16>
// CHECK: arith.extf {{.*}} : bf16 to f32
// CHECK: memref.load %[[KC]][%[[BI]], %[[H]], %[[SLOT]], %{{.*}}] : memref<?x2x48x64xbf16>
// CHECK: math.exp
// CHECK: %[[PP:.*]] = math.exp
// CHECK: arith.mulf %[[PP]], %[[GATE]] : f32
// CHECK: memref.load %[[VC]][%[[BI]], %[[H]], %[[SLOT]], %{{.*}}] : memref<?x2x48x32xbf16>
// Window ring: positions max(0, pos - w + 1) .. pos in slots k + (p mod w).
// CHECK: %[[PB0:.*]] = memref.load %[[POS]][%[[BI]]] : memref<?xi64>
// CHECK: %[[PB:.*]] = arith.index_cast %[[PB0]] : i64 to index
// CHECK: %[[END:.*]] = arith.addi %[[PB]], %{{.*}} : index
// CHECK: %[[START:.*]] = arith.subi %[[END]], %{{.*}} : index
// CHECK: %[[LO:.*]] = arith.maxsi %[[START]], %{{.*}} : index
// CHECK: %[[WIN:.*]]:2 = scf.for %[[PI:[^ ]*]] = %[[LO]] to %[[END]] step %{{.*}} iter_args(%{{.*}} = %[[POOL]]#0, %{{.*}} = %[[POOL]]#1) -> (f32, f32) {
// CHECK: %[[W:.*]] = arith.constant 16 : index
// CHECK: %[[RING:.*]] = arith.remui %[[PI]], %[[W]] : index
// CHECK: %[[K:.*]] = arith.constant 32 : index
// CHECK: %[[RSLOT:.*]] = arith.addi %[[K]], %[[RING]] : index
// CHECK: memref.load %[[KC]][%[[BI]], %[[H]], %[[RSLOT]], %{{.*}}]
// CHECK: memref.load %[[VC]][%[[BI]], %[[H]], %[[RSLOT]], %{{.*}}]
// CHECK: arith.cmpf oeq, %[[WIN]]#1
// CHECK: %[[OB:.*]] = arith.truncf %{{.*}} : f32 to bf16
// CHECK: memref.store %[[OB]], %[[O]][%[[BI]], %[[HQ]], %{{.*}}] : memref<?x8x32xbf16>
// CHECK: memref.dealloc %[[ACC]]
// CHECK-NOT: sparsek.decode_attention
func.func @decode_bf16(%q: memref<?x8x64xbf16>, %kc: memref<?x2x48x64xbf16>,
                       %vc: memref<?x2x48x32xbf16>, %sc: memref<?x2x48xf32>,
                       %tau: memref<?x2xf32>, %cnt: memref<?x2xi32>, %pos: memref<?xi64>,
                       %o: memref<?x8x32xbf16>) {
  sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : memref<?x8x64xbf16>,
                               memref<?x2x48x64xbf16>, memref<?x2x48x32xbf16>, memref<?x2x48xf32>,
                               memref<?x2xf32>, memref<?x2xi32>, memref<?xi64>)
    k = 32 w = 16 outs(%o : memref<?x8x32xbf16>)
  return
}

// -----

// k = 0: the window ring only, no pool loop; f32 needs no widening.
// CHECK-LABEL: func.func @decode_window_only
// CHECK-NOT: arith.minnumf
// CHECK: arith.remui
// CHECK-NOT: arith.extf
// CHECK-NOT: sparsek.decode_attention
func.func @decode_window_only(%q: memref<2x4x16xf32>, %kc: memref<2x4x8x16xf32>,
                              %vc: memref<2x4x8x16xf32>, %sc: memref<2x4x8xf32>,
                              %tau: memref<2x4xf32>, %cnt: memref<2x4xi32>, %pos: memref<2xi64>,
                              %o: memref<2x4x16xf32>) {
  sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : memref<2x4x16xf32>,
                               memref<2x4x8x16xf32>, memref<2x4x8x16xf32>, memref<2x4x8xf32>,
                               memref<2x4xf32>, memref<2x4xi32>, memref<2xi64>)
    k = 0 w = 8 outs(%o : memref<2x4x16xf32>)
  return
}

// -----

// w = 0: the pool only, no ring remainder.
// CHECK-LABEL: func.func @decode_pool_only
// CHECK: arith.minnumf
// CHECK-NOT: arith.remui
// CHECK-NOT: sparsek.decode_attention
func.func @decode_pool_only(%q: memref<2x4x16xf32>, %kc: memref<2x4x8x16xf32>,
                            %vc: memref<2x4x8x16xf32>, %sc: memref<2x4x8xf32>,
                            %tau: memref<2x4xf32>, %cnt: memref<2x4xi32>, %pos: memref<2xi64>,
                            %o: memref<2x4x16xf32>) {
  sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : memref<2x4x16xf32>,
                               memref<2x4x8x16xf32>, memref<2x4x8x16xf32>, memref<2x4x8xf32>,
                               memref<2x4xf32>, memref<2x4xi32>, memref<2xi64>)
    k = 8 w = 0 outs(%o : memref<2x4x16xf32>)
  return
}
