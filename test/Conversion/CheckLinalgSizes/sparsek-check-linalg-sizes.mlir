// Buffer-form linalg ops whose operands share a dynamic size are guarded by
// a run-time comparison of those sizes (status 2, SHAPE_MISMATCH, and the op
// skipped otherwise); sizes shared only statically, and dimensions reached
// through compound map expressions, are not compared.
// RUN: sparsek-opt %s -split-input-file -sparsek-check-linalg-sizes | FileCheck %s

// CHECK-LABEL: func.func @matmul
// CHECK-SAME: %[[A:[^:]*]]: memref<?x?xf32>, %[[B:[^:]*]]: memref<?x8xf32>, %[[C:[^:]*]]: memref<?x8xf32>
// Operands in order, each map's plain dims: d2 (A's columns against B's
// rows), then d0 (A's rows against C's rows); d1 is static in B and C.
// CHECK: %[[AK:.*]] = memref.dim %[[A]], %c1
// CHECK: %[[BK:.*]] = memref.dim %[[B]], %c0
// CHECK: %[[EQ0:.*]] = arith.cmpi eq, %[[AK]], %[[BK]]
// CHECK: %[[AM:.*]] = memref.dim %[[A]], %c0
// CHECK: %[[CM:.*]] = memref.dim %[[C]], %c0
// CHECK: %[[EQ1:.*]] = arith.cmpi eq, %[[AM]], %[[CM]]
// CHECK: %[[OK:.*]] = arith.andi %[[EQ0]], %[[EQ1]]
// CHECK: arith.constant 2 : i32
// CHECK: scf.if %[[OK]] {
// CHECK-NEXT: linalg.matmul
// CHECK-NEXT: }
// CHECK-NEXT: return
func.func @matmul(%a: memref<?x?xf32>, %b: memref<?x8xf32>, %c: memref<?x8xf32>) {
  linalg.matmul ins(%a, %b : memref<?x?xf32>, memref<?x8xf32>) outs(%c : memref<?x8xf32>)
  return
}

// -----

// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: scf.if
// CHECK: linalg.matmul
// CHECK: linalg.fill
// CHECK-NOT: scf.if
// CHECK: return
func.func @left_alone(%a: memref<4x16xf32>, %b: memref<16x8xf32>, %c: memref<4x8xf32>,
                      %x: memref<?x64xf32>) {
  // Static sizes: the verifier compared them.
  linalg.matmul ins(%a, %b : memref<4x16xf32>, memref<16x8xf32>) outs(%c : memref<4x8xf32>)
  // One buffer operand.
  %f0 = arith.constant 0.0 : f32
  linalg.fill ins(%f0 : f32) outs(%x : memref<?x64xf32>)
  return
}

// -----

// d0 is plain in both maps and dynamic: compared. x's columns are reached
// through d1 * 16 + d2: not compared (y's 4 and 16 are static).
// CHECK-LABEL: func.func @compound_maps
// CHECK: %[[X0:.*]] = memref.dim %arg0, %c0
// CHECK: %[[Y0:.*]] = memref.dim %arg1, %c0
// CHECK: %[[OK:.*]] = arith.cmpi eq, %[[X0]], %[[Y0]]
// CHECK-NOT: memref.dim
// CHECK: scf.if %[[OK]] {
// CHECK-NEXT: linalg.generic
func.func @compound_maps(%x: memref<?x64xf32>, %y: memref<?x4x16xf32>) {
  linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1 * 16 + d2)>,
                                   affine_map<(d0, d1, d2) -> (d0, d1, d2)>],
                  iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%x : memref<?x64xf32>) outs(%y : memref<?x4x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  }
  return
}
