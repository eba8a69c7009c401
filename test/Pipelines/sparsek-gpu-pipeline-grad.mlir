// The GPU pipeline lowers the gradient ops to kernels. select_attention_grad
// goes tile first by default (backward-kernel=tiles: the SPARSEK VJP's
// support kernels, then one mma.sync kernel of 256 threads per 128-row tile,
// ldmatrix.trans for the transposed products). With backward-kernel=loops:
// the chunked selection's kernels, then the per-query backward with atomic
// dkey/dvalue/dgates, then the SPARSEK VJP's per-key ranges and scans.
// score_grad's sums over queries and tokens become global atomic adds.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa backward-kernel=loops" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa" | FileCheck %s --check-prefix=TILES
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa grad-tile-rows=64" | FileCheck %s --check-prefix=TILES64
// With PTX 8.1 (the default) on sm_90 or later the tiles add dkey and dvalue
// in column pairs; with PTX 8.0 or before sm_90, one column per atomic.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa chip=sm_90a" | FileCheck %s --check-prefix=PAIRS
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa features=+ptx80" | FileCheck %s --check-prefix=NOPAIRS
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa chip=sm_80" | FileCheck %s --check-prefix=NOPAIRS

// TILES: llvm.func @select_attention_grad(
// TILES: gpu.binary @select_attention_grad_kernel{{.*}}atom.global.add.f64
// TILES: gpu.binary @sparsek_select_attention_grad_tiles_0 {{.*}}.maxntid 256, 1, 1
// TILES-SAME: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
// TILES-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// TILES-SAME: atom.global.add.f32
// PAIRS: gpu.binary @sparsek_select_attention_grad_tiles_0 {{.*}}red.global.add.v2.f32
// NOPAIRS-NOT: red.global.add.v2.f32
// TILES64: gpu.binary @sparsek_select_attention_grad_tiles_0 {{.*}}.maxntid 128, 1, 1

// CHECK: llvm.func @select_attention_grad(
// CHECK: gpu.launch_func
// CHECK: llvm.func @_mlir_ciface_select_attention_grad(
// The selection's kernels come first; then the per-query backward's f32
// atomics, then the support counts' f64 difference array.
// CHECK: gpu.binary @select_attention_grad_kernel{{.*}}.target sm_90{{.*}}atom.global.add.f32
// CHECK: gpu.binary @select_attention_grad_kernel{{.*}}atom.global.add.f64
// CHECK: llvm.func @score_grad(
// CHECK: gpu.launch_func
// CHECK: gpu.binary @score_grad_kernel{{.*}}atom.global.add.f32
// CHECK-NOT: sparsek.
func.func @select_attention_grad(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>,
                                 %u: tensor<?x?x?xf32>, %do: tensor<?x?x?x64xbf16>,
                                 %dq0: tensor<?x?x?x64xf32>, %dk0: tensor<?x?x?x64xf32>,
                                 %dv0: tensor<?x?x?x64xf32>, %du0: tensor<?x?x?xf32>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  %dq, %dk, %dv, %du = sparsek.select_attention_grad
      ins(%q, %k, %v, %u, %do : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>,
          tensor<?x?x?xf32>, tensor<?x?x?x64xbf16>) k = 16 w = 8
      outs(%dq0, %dk0, %dv0, %du0 : tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>,
           tensor<?x?x?xf32>)
      -> tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %dq, %dk, %dv, %du : tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

func.func @score_grad(%x: tensor<?x?x32xbf16>, %w: tensor<4x32xbf16>, %du: tensor<?x4x?xf32>,
                      %dx0: tensor<?x?x32xf32>, %dw0: tensor<4x32xf32>, %db0: tensor<4xf32>, %ds0: tensor<4xf32>)
    -> (tensor<?x?x32xf32>, tensor<4x32xf32>, tensor<4xf32>, tensor<4xf32>) {
  %dx, %dw, %db, %ds = sparsek.score_grad ins(%x, %w, %du : tensor<?x?x32xbf16>, tensor<4x32xbf16>, tensor<?x4x?xf32>)
      outs(%dx0, %dw0, %db0, %ds0 : tensor<?x?x32xf32>, tensor<4x32xf32>, tensor<4xf32>, tensor<4xf32>)
      -> tensor<?x?x32xf32>, tensor<4x32xf32>, tensor<4xf32>, tensor<4xf32>
  return %dx, %dw, %db, %ds : tensor<?x?x32xf32>, tensor<4x32xf32>, tensor<4xf32>, tensor<4xf32>
}
