// prefill-kernel=auto, the default: the fused select_attention takes the
// wgmma tiles where the chip has wgmma (sm_90a: H100, H200) and the mma.sync
// tiles elsewhere (sm_90, whose PTX later GPUs compile; sm_100a, which has no
// wgmma). Both forms cover the same ops, so what they do not cover (f32
// inputs, D = 96) keeps the loop kernels under every chip. An explicit
// prefill-kernel wins over the chip.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa chip=sm_90a" | FileCheck %s --check-prefixes=CHECK,WGMMA
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa prefill-kernel=auto chip=sm_90a" | FileCheck %s --check-prefixes=CHECK,WGMMA
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa" | FileCheck %s --check-prefixes=CHECK,MMA
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa prefill-kernel=auto chip=sm_90" | FileCheck %s --check-prefixes=CHECK,MMA
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa chip=sm_100a features=+ptx86" | FileCheck %s --check-prefixes=CHECK,MMA
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa prefill-kernel=mma-sync chip=sm_90a" | FileCheck %s --check-prefixes=CHECK,MMA
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa prefill-kernel=loops chip=sm_90a" | FileCheck %s --check-prefixes=CHECK,LOOPS
// The sm_90a binary through ptxas, as the Python layer builds it on Hopper.
// RUN: %if ptxas %{ sparsek-opt %s --sparsek-gpu-pipeline="chip=sm_90a" -o /dev/null %}

// CHECK-LABEL: llvm.func @bf16_attn(
// WGMMA: gpu.launch_func {{ *}}@sparsek_select_attention_wgmma_0::@tiles
// MMA: gpu.launch_func {{ *}}@sparsek_select_attention_tiles_0::@tiles
// LOOPS-NOT: @sparsek_select_attention_{{tiles|wgmma}}_
// CHECK-LABEL: llvm.func @f16_d128_attn(
// WGMMA: gpu.launch_func {{ *}}@sparsek_select_attention_wgmma_1::@tiles
// MMA: gpu.launch_func {{ *}}@sparsek_select_attention_tiles_1::@tiles
// LOOPS-NOT: @sparsek_select_attention_{{tiles|wgmma}}_
// CHECK-LABEL: llvm.func @f32_attn(
// CHECK-NOT: @sparsek_select_attention_{{tiles|wgmma}}_
// CHECK-LABEL: llvm.func @bf16_d96_attn(
// CHECK-NOT: @sparsek_select_attention_{{tiles|wgmma}}_
// CHECK: gpu.binary
// WGMMA-DAG: gpu.binary @sparsek_select_attention_wgmma_0 {{.*}}wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
// WGMMA-DAG: gpu.binary @sparsek_select_attention_wgmma_1 {{.*}}wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16
// MMA-DAG: gpu.binary @sparsek_select_attention_tiles_0 {{.*}}mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// MMA-DAG: gpu.binary @sparsek_select_attention_tiles_1 {{.*}}mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
// MMA-NOT: wgmma
// LOOPS-NOT: mma
func.func @bf16_attn(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>,
                     %u: tensor<?x?x?xf32>, %o0: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xbf16> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>,
                                    tensor<?x?x?x64xbf16>, tensor<?x?x?xf32>)
         k = 16 w = 8 outs(%o0 : tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xbf16>
  return %o : tensor<?x?x?x64xbf16>
}

func.func @f16_d128_attn(%q: tensor<?x?x?x128xf16>, %k: tensor<?x?x?x128xf16>, %v: tensor<?x?x?x128xf16>,
                         %u: tensor<?x?x?xf32>, %o0: tensor<?x?x?x128xf16>) -> tensor<?x?x?x128xf16> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x?x?x128xf16>, tensor<?x?x?x128xf16>,
                                    tensor<?x?x?x128xf16>, tensor<?x?x?xf32>)
         k = 2048 w = 512 outs(%o0 : tensor<?x?x?x128xf16>) -> tensor<?x?x?x128xf16>
  return %o : tensor<?x?x?x128xf16>
}

func.func @f32_attn(%q: tensor<?x?x?x64xf32>, %k: tensor<?x?x?x64xf32>, %v: tensor<?x?x?x64xf32>,
                    %u: tensor<?x?x?xf32>, %o0: tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>,
                                    tensor<?x?x?x64xf32>, tensor<?x?x?xf32>)
         k = 16 w = 8 outs(%o0 : tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32>
  return %o : tensor<?x?x?x64xf32>
}

func.func @bf16_d96_attn(%q: tensor<?x?x?x96xbf16>, %k: tensor<?x?x?x96xbf16>, %v: tensor<?x?x?x96xbf16>,
                         %u: tensor<?x?x?xf32>, %o0: tensor<?x?x?x96xbf16>) -> tensor<?x?x?x96xbf16> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x?x?x96xbf16>, tensor<?x?x?x96xbf16>,
                                    tensor<?x?x?x96xbf16>, tensor<?x?x?xf32>)
         k = 16 w = 8 outs(%o0 : tensor<?x?x?x96xbf16>) -> tensor<?x?x?x96xbf16>
  return %o : tensor<?x?x?x96xbf16>
}
