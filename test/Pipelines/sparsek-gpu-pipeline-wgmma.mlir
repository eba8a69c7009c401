// prefill-kernel=wgmma (chip sm_90a): the fused select_attention becomes the
// tile-first wgmma kernel, whose PTX holds the Hopper path: cp.async gathers
// into dynamic shared memory, fence.proxy.async before wgmma reads them,
// Q K^T on wgmma m64n64k16 (shared-memory descriptors), quad shuffles and
// ex2 for the online softmax, (P * gates) V on wgmma m64n128k16 with P in
// registers and V transposed, one warpgroup (128 threads) per tile of 64
// rows, two (256 threads) with tile-rows=128. f32 inputs keep the loop
// kernels.
// prefill-kernel=auto, the default, takes it on chip=sm_90a. The fatbin run
// compiles the PTX with ptxas for sm_90a.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa prefill-kernel=wgmma chip=sm_90a" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa chip=sm_90a" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa chip=sm_90a tile-rows=128" | FileCheck %s --check-prefix=R128
// RUN: %if ptxas %{ sparsek-opt %s --sparsek-gpu-pipeline="prefill-kernel=wgmma chip=sm_90a" -o /dev/null %}

// CHECK: llvm.func @bf16_attn(
// CHECK: gpu.launch_func {{ *}}@sparsek_select_attention_wgmma_0::@tiles blocks in (%{{.*}}, %{{.*}}, %{{.*}}) threads in (%{{.*}}, %{{.*}}, %{{.*}}) : i64 dynamic_shared_memory_size %{{.*}}
// CHECK: llvm.func @f32_attn(
// CHECK-NOT: @sparsek_select_attention_wgmma_
// CHECK: gpu.binary @sparsek_select_attention_wgmma_0
// CHECK-SAME: chip = "sm_90a"
// CHECK-SAME: .target sm_90a
// CHECK-SAME: .maxntid 128, 1, 1
// CHECK-SAME: .shared .align 16 .b8 __dynamic_shmem__0
// The instructions, in whatever order LLVM lays the blocks out:
// CHECK-DAG: cp.async.ca.shared.global [%rd{{[0-9]+}}+{{[0-9]+}}], [%rd{{[0-9]+}}], 4, %r
// CHECK-DAG: cp.async.cg.shared.global [%rd{{[0-9]+}}{{(\+[0-9]+)?}}], [%rd{{[0-9]+}}], 16, %r
// CHECK-DAG: cp.async.commit_group
// CHECK-DAG: cp.async.wait_group \090;\0A\09fence.proxy.async.shared::cta;\0A\09bar.sync \090;
// CHECK-DAG: wgmma.fence.sync.aligned;\0A{{.*}}wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
// CHECK-DAG: wgmma.commit_group.sync.aligned;\0A\09wgmma.wait_group.sync.aligned \090;
// CHECK-DAG: shfl.sync.bfly.b32
// CHECK-DAG: ex2.approx
// CHECK-DAG: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {{.*}}}, {%r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}, %r{{[0-9]+}}}, %rd{{[0-9]+}}, p, 1, 1, 1;

// R128: gpu.binary @sparsek_select_attention_wgmma_0
// R128-SAME: .maxntid 256, 1, 1
// R128-SAME: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16

func.func @bf16_attn(%q: tensor<?x?x?x128xbf16>, %k: tensor<?x?x?x128xbf16>, %v: tensor<?x?x?x128xbf16>,
                     %u: tensor<?x?x?xf32>, %o0: tensor<?x?x?x128xbf16>) -> tensor<?x?x?x128xbf16> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16>,
                                    tensor<?x?x?x128xbf16>, tensor<?x?x?xf32>)
         k = 16 w = 8 outs(%o0 : tensor<?x?x?x128xbf16>) -> tensor<?x?x?x128xbf16>
  return %o : tensor<?x?x?x128xbf16>
}

func.func @f32_attn(%q: tensor<?x?x?x64xf32>, %k: tensor<?x?x?x64xf32>, %v: tensor<?x?x?x64xf32>,
                    %u: tensor<?x?x?xf32>, %o0: tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>,
                                    tensor<?x?x?x64xf32>, tensor<?x?x?xf32>)
         k = 16 w = 8 outs(%o0 : tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32>
  return %o : tensor<?x?x?x64xf32>
}
