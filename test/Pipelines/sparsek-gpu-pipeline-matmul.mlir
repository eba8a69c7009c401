// A bf16 matmul into f32 (a layer's projection) through the GPU pipeline:
// tensor-core PTX (cp.async into workgroup memory, ldmatrix, B transposed,
// mma.sync m16n8k16 on bf16 with f32 accumulators; split K's last CTA told
// through an OR-reducing barrier) by default, scalar code
// with matmul-tiles=false.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa matmul-tiles=false" | FileCheck %s --check-prefix=LOOPS

// CHECK: llvm.func @proj_entry(
// CHECK: gpu.binary @sparsek_matmul_tiles_0
// CHECK-SAME: cp.async.cg.shared.global
// CHECK-SAME: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// CHECK-SAME: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
// CHECK-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// CHECK-SAME: bar.red.or.pred
// LOOPS-NOT: mma.sync
// LOOPS-NOT: sparsek_matmul_tiles
// LOOPS: llvm.func @proj_entry(
func.func @proj(%x: tensor<?x2048xbf16>, %w: tensor<2048x512xbf16>, %acc: tensor<?x512xf32>)
    -> tensor<?x512xf32> {
  %r = linalg.matmul ins(%x, %w : tensor<?x2048xbf16>, tensor<2048x512xbf16>)
                     outs(%acc : tensor<?x512xf32>) -> tensor<?x512xf32>
  return %r : tensor<?x512xf32>
}
