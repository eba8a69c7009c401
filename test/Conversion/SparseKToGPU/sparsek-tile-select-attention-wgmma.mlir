// sparsek-tile-select-attention{form=wgmma}: the same host side and grid as
// the mma-sync form, then one warpgroup per 64 rows of a tile on Hopper
// wgmma (tiles of 64 rows by default, 128 with tile-rows=128): dynamic
// workgroup memory rounded up to 1024 bytes, Q and double-buffered K/V tiles
// gathered with cp.async (zero fill for padding) into 128B-swizzled atoms,
// fence.proxy.async before wgmma reads them, Q K^T on nvvm.wgmma.mma_async
// (both operands K-major in shared memory), (P * gates) V on wgmma with P
// from registers (inline PTX) and V transposed from shared memory, one key
// tile behind Q K^T so that it runs during the softmax.
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=form=wgmma" | FileCheck %s
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=form=wgmma tile-rows=128" | FileCheck %s --check-prefix=WIDE

// Tiles of 128 rows: two warpgroups (256 threads), each with its own 64 Q
// rows, sharing the K/V buffers; the same wgmma steps per warpgroup.
// WIDE-LABEL: func.func @bf16_d128
// WIDE: gpu.launch_func @sparsek_select_attention_wgmma_0::@tiles
// WIDE-SAME: threads in (%c256
// Q 2 x 16 KiB, K and V 2 x 16 KiB each, slots 3 KiB, 1 KiB to align.
// WIDE-SAME: dynamic_shared_memory_size %c102400_i32
// WIDE: gpu.func @tiles(
// WIDE-SAME: known_block_size = array<i32: 256, 1, 1>
// WIDE: memref.view {{.*}} to memref<2x2x64x64xbf16, #gpu.address_space<workgroup>>
// WIDE: nvgpu.device_async_copy {{.*}} : memref<?x?x?x128xbf16> to memref<2x2x64x64xbf16, #gpu.address_space<workgroup>>
// WIDE: scf.for
// WIDE-COUNT-8: nvvm.wgmma.mma_async {{.*}}, <m = 64, n = 64, k = 16>
// WIDE: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// WIDE-LABEL: func.func @f16_window_only
// WIDE: dynamic_shared_memory_size %c69632_i32
// WIDE-LABEL: func.func @f32_left_alone

// CHECK-LABEL: func.func @bf16_d128
// CHECK: %[[LISTS:.*]] = memref.alloc({{.*}}, %c8{{.*}}) : memref<?x?x?xi32>
// CHECK: gpu.launch_func @[[MOD:sparsek_select_attention_wgmma_0]]::@tiles
// CHECK-SAME: threads in (%c128
// Q 16 KiB, K and V 2 x 16 KiB each, slots 3 KiB (positions, scores, list
// ranks), 1 KiB to align the base.
// CHECK-SAME: dynamic_shared_memory_size %c86016_i32
// CHECK-SAME: args(%{{.*}}, %[[LISTS]] : memref<?x?x?xi32>
// CHECK-NOT: sparsek.select_attention
// CHECK: gpu.module @[[MOD]]
// CHECK: gpu.func @tiles(
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// CHECK: gpu.dynamic_shared_memory
// CHECK: memref.extract_aligned_pointer_as_index
// CHECK: memref.view {{.*}} to memref<1x2x64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x2x64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x2x64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<3x64xi32, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<3x64xi64, #gpu.address_space<workgroup>>
// The prologue: Q, the K rows of key tile 0 and zeros into V buffer 1 as
// one cp.async group.
// CHECK: nvgpu.device_async_copy {{.*}} : memref<?x?x?x128xbf16> to memref<1x2x64x64xbf16, #gpu.address_space<workgroup>>
// CHECK: nvgpu.device_async_copy %arg1[{{.*}}], %{{.*}}[%c0{{.*}} : memref<?x?x?x128xbf16> to memref<2x2x64x64xbf16
// CHECK: nvgpu.device_async_copy %arg2[{{.*}}], %{{.*}}[%c1{{.*}} : memref<?x?x?x128xbf16> to memref<2x2x64x64xbf16
// CHECK: nvgpu.device_async_create_group
// CHECK: scf.for
// K of tile i and V of tile i - 1 landed and are visible to the async
// proxy; K of tile i + 1 and V of tile i in flight.
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 0 : i32}
// CHECK-NEXT: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK-NEXT: gpu.barrier
// CHECK: nvgpu.device_async_copy %arg1
// CHECK: nvgpu.device_async_copy %arg2
// CHECK: nvgpu.device_async_create_group
// O (64 f32), the previous tile's P (16 registers) and S's zero
// accumulators pinned (an empty asm statement) before the fence, so LLVM
// keeps their arithmetic out of the batch.
// CHECK: llvm.inline_asm has_side_effects asm_dialect = att "", "{{(=f,)+(=r,)+(=f,)+}}0,
// CHECK: nvvm.wgmma.fence.aligned
// S = Q K^T: 8 k-steps of m64n64k16, one group.
// CHECK-COUNT-8: nvvm.wgmma.mma_async {{.*}}, <m = 64, n = 64, k = 16>, D[<f32>, <one>], A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>]
// CHECK-NEXT: nvvm.wgmma.commit.group.sync.aligned
// O += (P * gates) V of the previous tile: 4 k-steps of m64n128k16, A from
// registers, the second group, left running through this tile's softmax.
// CHECK: llvm.inline_asm has_side_effects asm_dialect = att "{{.*}}wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {$0, {{.*}}, $63}, {$128, $129, $130, $131}, $132, p, 1, 1, 1;
// CHECK-SAME: "=f,{{.*}},0,1,{{.*}},63,r,r,r,r,l,n"
// CHECK: nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT: nvvm.wgmma.wait.group.sync.aligned 1
// CHECK: llvm.inline_asm has_side_effects asm_dialect = att "", "=f,
// Membership by the tile's class, alike in every thread: all keys in every
// row's window (no test), all from the list Sel(t0) (score tests only: the
// slot's list rank, stored by the previous step, against the row's), or
// mixed (positions against the row's bounds, then the same rank test; no
// score comparison either).
// CHECK: scf.if
// CHECK: } else {
// CHECK: scf.if
// CHECK-NOT: arith.cmpf oeq
// CHECK: memref.load %{{.*}} : memref<3x64xi64, #gpu.address_space<workgroup>>
// CHECK-NEXT: arith.cmpi sge, %{{.*}}, %{{.*}} : i64
// CHECK: } else {
// CHECK-NOT: arith.cmpf oeq
// CHECK: memref.load %{{.*}} : memref<3x64xi32, #gpu.address_space<workgroup>>
// CHECK-NEXT: memref.load %{{.*}} : memref<3x64xi64, #gpu.address_space<workgroup>>
// CHECK-NEXT: arith.cmpi ult, %{{.*}}, %{{.*}} : i32
// CHECK-NEXT: arith.cmpi sge, %{{.*}}, %{{.*}} : i64
// CHECK: gpu.shuffle xor
// Conditional rescaling: the warp votes whether a row's maximum grew by more
// than 2^8 in P over its reference, and only then moves the references.
// CHECK: arith.cmpf ogt, %{{.*}}, %cst{{.*}} : f32
// CHECK: nvvm.vote.sync any %{{.*}}, %{{.*}} -> i1
// Maxima of unscaled scores, the (verified positive) scale folded into each
// exponent: s c - m c as one fma.
// CHECK: math.fma
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f32"
// The previous P V done: O and P (f32) pinned after the wait, then O
// rescaled (when the warp voted so) and P packed for the next step.
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK-NEXT: llvm.inline_asm has_side_effects asm_dialect = att "", "{{(=f,)+}}0,
// CHECK: scf.if %{{.*}} -> (f32,
// CHECK-COUNT-64: arith.mulf
// CHECK: } else {
// CHECK: scf.yield
// The last tile's P V after the loop.
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 0 : i32}
// CHECK-NEXT: nvvm.fence.proxy
// CHECK-NEXT: gpu.barrier
// CHECK: nvvm.wgmma.fence.aligned
// CHECK-COUNT-4: wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16
// CHECK: nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: vector.store {{.*}} : memref<?x?x?x128xbf16>, vector<2xbf16>
func.func @bf16_d128(%q: memref<?x?x?x128xbf16>, %k: memref<?x?x?x128xbf16>, %v: memref<?x?x?x128xbf16>,
                     %u: memref<?x?x?xf32>, %o: memref<?x?x?x128xbf16>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<?x?x?x128xbf16>, memref<?x?x?x128xbf16>,
                               memref<?x?x?x128xbf16>, memref<?x?x?xf32>)
      k = 8 w = 4 outs(%o : memref<?x?x?x128xbf16>)
  return
}

// -----

// f16, D = 64, Dv = 128: Q/K tiles of one atom, S on m64n64k16 with 4
// k-steps; k = 0: the window alone, no selection buffers.
// CHECK-LABEL: func.func @f16_window_only
// CHECK-NOT: memref.alloc
// CHECK: gpu.launch_func @sparsek_select_attention_wgmma_0::@tiles
// CHECK-SAME: dynamic_shared_memory_size %c61440_i32
// CHECK: gpu.func @tiles(
// CHECK: memref.view {{.*}} to memref<1x1x64x64xf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x1x64x64xf16, #gpu.address_space<workgroup>>
// CHECK: memref.view {{.*}} to memref<2x2x64x64xf16, #gpu.address_space<workgroup>>
// CHECK-COUNT-4: nvvm.wgmma.mma_async {{.*}}, <m = 64, n = 64, k = 16>, D[<f32>, <one>], A[<f16>, <one>, <row>], B[<f16>, <one>, <col>]
// CHECK-NOT: nvvm.wgmma.mma_async
// CHECK: wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16
// CHECK: vector.store {{.*}} : memref<2x8x?x128xf16>, vector<2xf16>
func.func @f16_window_only(%q: memref<2x8x?x64xf16>, %k: memref<2x2x?x64xf16>, %v: memref<2x2x?x128xf16>,
                           %u: memref<2x2x?xf32>, %o: memref<2x8x?x128xf16>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<2x8x?x64xf16>, memref<2x2x?x64xf16>,
                               memref<2x2x?x128xf16>, memref<2x2x?xf32>)
      k = 0 w = 16 outs(%o : memref<2x8x?x128xf16>)
  return
}

// -----

// What the mma-sync form leaves alone, the wgmma form leaves alone too.
// CHECK-LABEL: func.func @f32_left_alone
// CHECK: sparsek.select_attention
// CHECK-NOT: gpu.launch_func
func.func @f32_left_alone(%q: memref<1x4x?x64xf32>, %k: memref<1x2x?x64xf32>, %v: memref<1x2x?x64xf32>,
                          %u: memref<1x2x?xf32>, %o: memref<1x4x?x64xf32>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<1x4x?x64xf32>, memref<1x2x?x64xf32>,
                               memref<1x2x?x64xf32>, memref<1x2x?xf32>)
      k = 8 w = 4 outs(%o : memref<1x4x?x64xf32>)
  return
}
