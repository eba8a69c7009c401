// The gradient ops become CPU loop nests: attention_grad zeroes its summed
// destinations, recomputes each query's softmax (one Dv-float row for the
// output) and accumulates in a second pass; select_grad scatters the gate
// gradients of support entries and subtracts the support mean; the composite
// recomputes the selection into scratch and chains the two; score_grad and
// mask_grad are plain reductions. The parallel (GPU) form of the others is
// in lower-grad-parallel.mlir; mask_grad has none and is rejected.
// RUN: sparsek-opt %s -sparsek-lower-to-loops -split-input-file | FileCheck %s
// RUN: not sparsek-opt %s -sparsek-lower-to-loops=parallel-loops=true -split-input-file 2>&1 | FileCheck %s --check-prefix=PARALLEL

// CHECK-LABEL: func.func @attention_grad
// CHECK-SAME: %[[DK:[^:]*]]: memref<1x2x?x8xf32>, %[[DV:[^:]*]]: memref<1x2x?x8xf32>, %[[DG:[^:]*]]: memref<1x2x?x3xf32>)
// CHECK: memref.store %{{.*}}, %[[DK]]
// CHECK: memref.store %{{.*}}, %[[DV]]
// CHECK: memref.store %{{.*}}, %[[DG]]
// CHECK: %[[ROW:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// Pass 1: the online softmax; pass 2: a = exp(s - m) / l.
// CHECK: math.exp
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: memref.dealloc %[[ROW]]
func.func @attention_grad(%q: memref<1x4x?x8xbf16>, %k: memref<1x2x?x8xbf16>, %v: memref<1x2x?x8xbf16>, %i: memref<1x2x?x3xi32>, %g: memref<1x2x?x3xf32>, %do: memref<1x4x?x8xbf16>, %dq: memref<1x4x?x8xf32>, %dk: memref<1x2x?x8xf32>, %dv: memref<1x2x?x8xf32>, %dg: memref<1x2x?x3xf32>) {
  sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : memref<1x4x?x8xbf16>, memref<1x2x?x8xbf16>, memref<1x2x?x8xbf16>, memref<1x2x?x3xi32>, memref<1x2x?x3xf32>, memref<1x4x?x8xbf16>) w = 2 outs(%dq, %dk, %dv, %dg : memref<1x4x?x8xf32>, memref<1x2x?x8xf32>, memref<1x2x?x8xf32>, memref<1x2x?x3xf32>)
  return
}

// -----

// CHECK-LABEL: func.func @select_attention_grad
// CHECK-DAG: %[[IDX:.*]] = memref.alloc(%{{.*}}) : memref<?x?x?x4xi64>
// CHECK-DAG: %[[TAU:.*]] = memref.alloc(%{{.*}}) : memref<?x?x?xf32>
// The selection, recomputed: its tau solver's scratch.
// CHECK: memref.store {{.*}}, %[[TAU]]
// The support test of select_grad: 0 < clip(u - tau, 0, 1) < 1.
// CHECK: arith.cmpf ogt
// CHECK: arith.cmpf olt
// CHECK: memref.dealloc %[[IDX]]
func.func @select_attention_grad(%q: memref<?x2x?x8xf32>, %k: memref<?x1x?x8xf32>, %v: memref<?x1x?x8xf32>, %u: memref<?x1x?xf32>, %do: memref<?x2x?x8xf32>, %dq: memref<?x2x?x8xf32>, %dk: memref<?x1x?x8xf32>, %dv: memref<?x1x?x8xf32>, %du: memref<?x1x?xf32>) {
  sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : memref<?x2x?x8xf32>, memref<?x1x?x8xf32>, memref<?x1x?x8xf32>, memref<?x1x?xf32>, memref<?x2x?x8xf32>) k = 4 w = 2 outs(%dq, %dk, %dv, %du : memref<?x2x?x8xf32>, memref<?x1x?x8xf32>, memref<?x1x?x8xf32>, memref<?x1x?xf32>)
  return
}

// -----

// CHECK-LABEL: func.func @score_grad
// CHECK-SAME: %[[X:[^:]*]]: memref<2x?x8xf16>
// CHECK: %[[XV:.*]] = memref.load %[[X]]
// CHECK: arith.extf %[[XV]] : f16 to f32
func.func @score_grad(%x: memref<2x?x8xf16>, %w: memref<3x8xf16>, %du: memref<2x3x?xf32>, %dx: memref<2x?x8xf32>, %dw: memref<3x8xf32>, %db: memref<3xf32>, %ds: memref<3xf32>) {
  sparsek.score_grad ins(%x, %w, %du : memref<2x?x8xf16>, memref<3x8xf16>, memref<2x3x?xf32>) outs(%dx, %dw, %db, %ds : memref<2x?x8xf32>, memref<3x8xf32>, memref<3xf32>, memref<3xf32>)
  return
}

// -----

// CHECK-LABEL: func.func @mask_grad
// CHECK: arith.cmpf ogt
// CHECK: arith.cmpf olt
// CHECK: arith.select
// PARALLEL: 'sparsek.mask_grad' op has no parallel (GPU) lowering yet
func.func @mask_grad(%z: memref<4x?xf32>, %t: memref<4xf32>, %dp: memref<4x?xf32>, %dz: memref<4x?xf32>) {
  sparsek.mask_grad ins(%z, %t, %dp : memref<4x?xf32>, memref<4xf32>, memref<4x?xf32>) outs(%dz : memref<4x?xf32>)
  return
}
