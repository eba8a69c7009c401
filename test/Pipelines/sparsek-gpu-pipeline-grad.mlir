// The GPU pipeline lowers the gradient ops to kernels: select_attention_grad
// (the chunked selection's kernels, then the per-query backward with atomic
// dkey/dvalue/dgates, then the SPARSEK VJP's per-key ranges and scans) and
// score_grad; the sums over queries and tokens become global atomic adds.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa" | FileCheck %s

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
