// sparsek.score becomes a loop nest over (b, h, t) with an f32 reduction
// over the model width, plus the optional bias and the slope at the absolute
// position offset + t; dynamic sizes are checked at run time.
// RUN: sparsek-opt %s -sparsek-lower-to-loops -split-input-file | FileCheck %s

// CHECK-LABEL: func.func @score_bf16
// CHECK-SAME: %[[X:[^:]*]]: memref<2x?x64xbf16>, %[[W:[^:]*]]: memref<4x64xbf16>, %[[BIAS:[^:]*]]: memref<4xf32>, %[[SLOPE:[^:]*]]: memref<4xf32>, %[[OFF:[^:]*]]: index, %[[U:[^:]*]]: memref<2x4x?xf32>
// Only T is dynamic: x's must equal u's.
// CHECK: %[[TX:.*]] = memref.dim %[[X]], %{{.*}} : memref<2x?x64xbf16>
// CHECK: %[[TU:.*]] = memref.dim %[[U]], %{{.*}} : memref<2x4x?xf32>
// CHECK: %[[SAME:.*]] = arith.cmpi eq, %[[TX]], %[[TU]] : index
// CHECK: %[[BAD:.*]] = arith.xori %[[SAME]], %{{.*}} : i1
// CHECK: scf.if %[[BAD]] {
// CHECK: memref.get_global @__sparsek_status
// CHECK: arith.constant 2 : i32
// CHECK: scf.if %[[SAME]] {
// CHECK: %[[T:.*]] = memref.dim %[[X]]
// CHECK: scf.for %[[B:[^ ]*]] =
// CHECK: scf.for %[[H:[^ ]*]] =
// CHECK: scf.for %[[TI:[^ ]*]] = %{{.*}} to %[[T]] step
// CHECK: %[[DOT:.*]] = scf.for %[[C:[^ ]*]] = {{.*}} iter_args(%[[ACC:.*]] = %{{.*}}) -> (f32) {
// CHECK: %[[XE:.*]] = memref.load %[[X]][%[[B]], %[[TI]], %[[C]]] : memref<2x?x64xbf16>
// CHECK: %[[XF:.*]] = arith.extf %[[XE]] : bf16 to f32
// CHECK: %[[WE:.*]] = memref.load %[[W]][%[[H]], %[[C]]] : memref<4x64xbf16>
// CHECK: %[[WF:.*]] = arith.extf %[[WE]] : bf16 to f32
// CHECK: %[[PROD:.*]] = arith.mulf %[[XF]], %[[WF]] : f32
// CHECK: %[[NEXT:.*]] = arith.addf %[[ACC]], %[[PROD]] : f32
// CHECK: scf.yield %[[NEXT]] : f32
// CHECK: %[[BV:.*]] = memref.load %[[BIAS]][%[[H]]] : memref<4xf32>
// CHECK: %[[WITHB:.*]] = arith.addf %[[DOT]], %[[BV]] : f32
// CHECK: %[[POS:.*]] = arith.addi %[[OFF]], %[[TI]] : index
// CHECK: %[[POSI:.*]] = arith.index_cast %[[POS]] : index to i64
// CHECK: %[[POSF:.*]] = arith.sitofp %[[POSI]] : i64 to f32
// CHECK: %[[SV:.*]] = memref.load %[[SLOPE]][%[[H]]] : memref<4xf32>
// CHECK: %[[LIN:.*]] = arith.mulf %[[SV]], %[[POSF]] : f32
// CHECK: %[[SCORE:.*]] = arith.addf %[[WITHB]], %[[LIN]] : f32
// CHECK: memref.store %[[SCORE]], %[[U]][%[[B]], %[[H]], %[[TI]]] : memref<2x4x?xf32>
// CHECK-NOT: sparsek.score
func.func @score_bf16(%x: memref<2x?x64xbf16>, %w: memref<4x64xbf16>, %b: memref<4xf32>,
                      %s: memref<4xf32>, %off: index, %u: memref<2x4x?xf32>) {
  sparsek.score ins(%x, %w : memref<2x?x64xbf16>, memref<4x64xbf16>)
    bias(%b : memref<4xf32>) slope(%s : memref<4xf32>) offset(%off)
    outs(%u : memref<2x4x?xf32>)
  return
}

// -----

// Without bias and slope the score is the dot product alone; without an
// offset the slope sees t itself; f32 needs no widening; static sizes need
// no check.
// CHECK-LABEL: func.func @score_f32_plain
// CHECK-NOT: __sparsek_status
// CHECK-NOT: arith.extf
// CHECK: %[[DOT:.*]] = scf.for {{.*}} -> (f32) {
// CHECK: }
// CHECK-NEXT: memref.store %[[DOT]], %{{.*}} : memref<1x2x8xf32>
// CHECK-NOT: sparsek.score
func.func @score_f32_plain(%x: memref<1x8x16xf32>, %w: memref<2x16xf32>, %u: memref<1x2x8xf32>) {
  sparsek.score ins(%x, %w : memref<1x8x16xf32>, memref<2x16xf32>) outs(%u : memref<1x2x8xf32>)
  return
}

// -----

// Slope without offset: the position is t; a dynamic Hkv must agree across
// weight, slope and output.
// CHECK-LABEL: func.func @score_slope_dynamic_heads
// CHECK-SAME: %[[W:[^:]*]]: memref<?x16xf32>, %[[SLOPE:[^:]*]]: memref<?xf32>, %[[U:[^:]*]]: memref<1x?x8xf32>
// CHECK: memref.dim %[[W]]
// CHECK: memref.dim %[[U]]
// CHECK: memref.dim %[[W]]
// CHECK: memref.dim %[[SLOPE]]
// CHECK: arith.constant 2 : i32
// CHECK: scf.for
// CHECK: scf.for
// CHECK: scf.for %[[TI:[^ ]*]] =
// CHECK: %[[POSI:.*]] = arith.index_cast %[[TI]] : index to i64
// CHECK: %[[POSF:.*]] = arith.sitofp %[[POSI]] : i64 to f32
// CHECK: arith.mulf %{{.*}}, %[[POSF]] : f32
// CHECK-NOT: sparsek.score
func.func @score_slope_dynamic_heads(%x: memref<1x8x16xf32>, %w: memref<?x16xf32>,
                                     %s: memref<?xf32>, %u: memref<1x?x8xf32>) {
  sparsek.score ins(%x, %w : memref<1x8x16xf32>, memref<?x16xf32>)
    slope(%s : memref<?xf32>) outs(%u : memref<1x?x8xf32>)
  return
}
