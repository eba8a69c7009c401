// prefill-kernel=mma-sync: the fused select_attention becomes the tile-first
// kernel, whose PTX holds the tensor-core path: cp.async gathers,
// ldmatrix (plain for Q and K, .trans for V), bf16 mma.sync m16n8k16 with
// f32 accumulators, quad shuffles and ex2 for the online softmax, 16-byte
// aligned workgroup tiles, 128 threads. f32 inputs keep the loop kernels.
// prefill-kernel=auto, the default, takes it on chip=sm_90 (the default
// chip), and an explicit mma-sync keeps it on sm_90a too (auto's choice
// there: sparsek-gpu-pipeline-auto.mlir); prefill-kernel=loops emits no
// tensor-core instruction.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa prefill-kernel=mma-sync" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa prefill-kernel=mma-sync chip=sm_90a" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa prefill-kernel=loops" | FileCheck %s --check-prefix=LOOPS
// RUN: %if ptxas %{ sparsek-opt %s --sparsek-gpu-pipeline="prefill-kernel=mma-sync" -o /dev/null %}

// CHECK: llvm.func @bf16_attn(
// CHECK: gpu.launch_func {{ *}}@sparsek_select_attention_tiles_0::@tiles blocks in (%{{.*}}, %{{.*}}, %{{.*}}) threads in (%{{.*}}, %{{.*}}, %{{.*}}) : i64
// CHECK: llvm.func @f32_attn(
// CHECK-NOT: @sparsek_select_attention_tiles_
// CHECK: gpu.binary @sparsek_select_attention_tiles_0
// CHECK-SAME: .maxntid 128, 1, 1
// CHECK-SAME: .shared .align 16 .b8
// CHECK-SAME: cp.async.cg.shared.global
// CHECK-SAME: cp.async.wait_group
// CHECK-SAME: ldmatrix.sync.aligned.m8n8.x4.shared.b16
// CHECK-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// CHECK-SAME: shfl.sync.bfly.b32
// CHECK-SAME: ex2.approx
// CHECK-SAME: ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16
// CHECK-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// LOOPS-NOT: mma.sync
// LOOPS-NOT: ldmatrix
func.func @bf16_attn(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>,
                     %u: tensor<?x?x?xf32>, %o0: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xbf16> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>,
                                    tensor<?x?x?x64xbf16>, tensor<?x?x?xf32>)
         k = 16 w = 8 outs(%o0 : tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xbf16>
  return %o : tensor<?x?x?x64xbf16>
}

func.func @f32_attn(%q: tensor<?x?x?x64xf32>, %k: tensor<?x?x?x64xf32>, %v: tensor<?x?x?x64xf32>,
                    %u: tensor<?x?x?xf32>, %o0: tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>,
                                    tensor<?x?x?x64xf32>, tensor<?x?x?xf32>)
         k = 16 w = 8 outs(%o0 : tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32>
  return %o : tensor<?x?x?x64xf32>
}
