// select_attention tile first: the chunked selection's thresholds (or, with
// row-selection=true, the row selection's: one kernel) become per-block
// lists Sel(t0) and per-query f32 tau/theta (parallel loops), then
// one mma.sync kernel per op (bf16/f16, D and Dv in {64, 128}) or, with
// form=scalar, the same tile walk as loops.
// RUN: sparsek-opt %s -split-input-file -sparsek-tile-select-attention | FileCheck %s
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=form=scalar select-chunk=7" | FileCheck %s --check-prefix=SCALAR
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=row-selection=true" | FileCheck %s --check-prefix=ROWS
// A fixed chunk length asks for the chunked selection on every row.
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=row-selection=true select-chunk=16" | FileCheck %s --check-prefix=CHUNKED
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=form=scalar row-selection=true" | FileCheck %s --check-prefix=SCALAR-ROWS

// CHECK-LABEL: func.func @bf16_d64
// The host side: sizes checked, the selection's scratch, then the block
// lists [B * Hkv, blocks, k] and per-query thresholds [B * Hkv, T].
// CHECK: memref.get_global @__sparsek_status
// NaN and +inf scores: the window-only positions' kernel reports them
// through the device status (the selection's per-candidate kernel does too).
// CHECK: scf.parallel
// CHECK:   scf.parallel
// CHECK:     memref.get_global @__sparsek_status_mirror
// CHECK:     memref.generic_atomic_rmw
// CHECK: %[[LISTS:.*]] = memref.alloc({{.*}}, %c8{{.*}}) : memref<?x?x?xi32>
// CHECK-NEXT: %[[COUNTS:.*]] = memref.alloc({{.*}}) : memref<?x?xi32>
// CHECK-NEXT: %[[TAU:.*]] = memref.alloc({{.*}}) : memref<?x?xf32>
// CHECK: scf.parallel
// CHECK: scf.parallel
// 128 threads per tile; grid (query blocks, KV heads x head splits, batch).
// CHECK: gpu.launch_func @[[MOD:sparsek_select_attention_tiles_0]]::@tiles
// CHECK-SAME: threads in (%c128
// CHECK-SAME: args(%{{.*}}, %[[LISTS]] : memref<?x?x?xi32>, %[[COUNTS]] : memref<?x?xi32>, %[[TAU]] : memref<?x?xf32>
// CHECK: memref.dealloc %[[LISTS]]
// CHECK-NOT: sparsek.select_attention
// CHECK: gpu.module @[[MOD]]
// CHECK: gpu.func @tiles(
// CHECK-SAME: workgroup(%[[SK:.*]] : memref<64x64xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[SV:.*]] : memref<64x64xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// Q rows staged through the K tile: cp.async with a zero-fill size.
// CHECK: nvgpu.device_async_copy %{{.*}}, %[[SK]][{{.*}}], 8, %{{.*}} {bypassL1}
// CHECK: nvgpu.ldmatrix %[[SK]][{{.*}}] {numTiles = 4 : i32, transpose = false}
// CHECK: scf.for
// CHECK: nvgpu.device_async_copy
// CHECK: nvgpu.device_async_wait
// CHECK: gpu.barrier
// CHECK: nvvm.mma.sync {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>{{.*}} : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
// CHECK: gpu.shuffle xor
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f32"
// CHECK: nvgpu.ldmatrix %[[SV]][{{.*}}] {numTiles = 4 : i32, transpose = true}
// CHECK: nvvm.mma.sync
// CHECK: scf.yield
// CHECK: vector.store {{.*}} : memref<?x?x?x64xbf16>, vector<2xbf16>
// CHECK-NOT: row_selection
// Rows of 1 to 4096 candidates (S - w): the row selection, one launch of a
// CTA of 32 warps per (batch, KV head) row; other rows: the chunked one.
// ROWS-LABEL: func.func @bf16_d64
// ROWS: %[[LISTS:.*]] = memref.alloc({{.*}}, %c8{{.*}}) : memref<?x?x?xi32>
// ROWS-NEXT: %[[COUNTS:.*]] = memref.alloc({{.*}}) : memref<?x?xi32>
// ROWS-NEXT: %[[TAU:.*]] = memref.alloc({{.*}}) : memref<?x?xf32>
// ROWS: arith.constant 4096 : index
// ROWS: scf.if
// ROWS: gpu.launch_func @[[ROWMOD:sparsek_row_selection_0]]::@row_selection
// ROWS-SAME: threads in (%c1024
// ROWS-SAME: args(%arg3 : memref<?x?x?xf32>, %[[TAU]] : memref<?x?xf32>, %{{.*}} : memref<?x?xf32>, %{{.*}} : memref<?x?xi32>, %[[LISTS]] : memref<?x?x?xi32>, %[[COUNTS]] : memref<?x?xi32>
// ROWS: } else {
// ROWS: scf.parallel
// ROWS: gpu.launch_func @[[TILES:sparsek_select_attention_tiles_0]]::@tiles
// The row's rank keys (i64) sorted in workgroup memory, ranks by position
// (i16); warps vote on 32 sorted entries at once.
// ROWS: gpu.module @[[ROWMOD]]
// ROWS: gpu.func @row_selection(
// ROWS-SAME: workgroup(%{{.*}} : memref<4096xi64, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %{{.*}} : memref<4096xi16, #gpu.address_space<workgroup>>
// ROWS-SAME: known_block_size = array<i32: 1024, 1, 1>
// ROWS: gpu.barrier
// ROWS: nvvm.vote.sync  ballot
// ROWS: gpu.module @[[TILES]]
// The CPU form: the same steps as loops, the scratch in host memory.
// SCALAR-ROWS-LABEL: func.func @bf16_d64
// SCALAR-ROWS-NOT: gpu.
// SCALAR-ROWS: arith.constant 4096 : index
// SCALAR-ROWS: scf.if
// SCALAR-ROWS: memref.alloc() : memref<4096xi64>
// SCALAR-ROWS-NEXT: memref.alloc() : memref<4096xi16>
// SCALAR-ROWS: } else {
// CHUNKED-LABEL: func.func @bf16_d64
// CHUNKED-NOT: row_selection
// CHUNKED: gpu.launch_func @sparsek_select_attention_tiles_0::@tiles
// CHUNKED-NOT: row_selection
// SCALAR-LABEL: func.func @bf16_d64
// SCALAR-NOT: gpu.
// SCALAR: scf.parallel
// SCALAR:   memref.generic_atomic_rmw
// SCALAR: arith.constant 7 : index
// SCALAR: scf.parallel
// SCALAR:   memref.generic_atomic_rmw
// SCALAR: scf.for
// SCALAR: math.exp
// SCALAR-NOT: sparsek.select_attention
func.func @bf16_d64(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>,
                    %u: memref<?x?x?xf32>, %o: memref<?x?x?x64xbf16>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>,
                               memref<?x?x?x64xbf16>, memref<?x?x?xf32>)
      k = 8 w = 4 outs(%o : memref<?x?x?x64xbf16>)
  return
}

// -----

// f16 operands go to mma.sync as vector<2xf16>; D = 128 and Dv = 64 size
// the two tiles apart. k = 0: the window alone, no selection buffers.
// CHECK-LABEL: func.func @f16_window_only
// CHECK-NOT: memref.alloc
// CHECK: gpu.launch_func @sparsek_select_attention_tiles_0::@tiles
// CHECK-SAME: args(%{{[^,]*}} : memref<2x8x?x128xf16>, %{{[^,]*}} : memref<2x2x?x128xf16>, %{{[^,]*}} : memref<2x2x?x64xf16>, %{{[^,]*}} : memref<2x2x?xf32>, %{{[^,]*}} : memref<2x8x?x64xf16>, %{{[^,]*}} : f32)
// CHECK: gpu.func @tiles(
// CHECK-SAME: workgroup(%{{.*}} : memref<64x128xf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %{{.*}} : memref<64x64xf16, #gpu.address_space<workgroup>>
// CHECK: nvvm.mma.sync {{.*}} : (vector<2xf16>, vector<2xf16>, f32) -> !llvm.struct<(f32, f32, f32, f32)>
// CHECK: vector.store {{.*}} : memref<2x8x?x64xf16>, vector<2xf16>
func.func @f16_window_only(%q: memref<2x8x?x128xf16>, %k: memref<2x2x?x128xf16>, %v: memref<2x2x?x64xf16>,
                           %u: memref<2x2x?xf32>, %o: memref<2x8x?x64xf16>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<2x8x?x128xf16>, memref<2x2x?x128xf16>,
                               memref<2x2x?x64xf16>, memref<2x2x?xf32>)
      k = 0 w = 16 outs(%o : memref<2x8x?x64xf16>)
  return
}

// -----

// f32 inputs and other head dims keep the loop lowering (left untouched);
// the scalar form takes every op.
// CHECK-LABEL: func.func @f32_left_alone
// CHECK: sparsek.select_attention
// CHECK-NOT: gpu.launch_func
// SCALAR-LABEL: func.func @f32_left_alone
// SCALAR-NOT: sparsek.select_attention
func.func @f32_left_alone(%q: memref<1x4x?x64xf32>, %k: memref<1x2x?x64xf32>, %v: memref<1x2x?x64xf32>,
                          %u: memref<1x2x?xf32>, %o: memref<1x4x?x64xf32>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<1x4x?x64xf32>, memref<1x2x?x64xf32>,
                               memref<1x2x?x64xf32>, memref<1x2x?xf32>)
      k = 8 w = 4 outs(%o : memref<1x4x?x64xf32>)
  return
}

// -----

// CHECK-LABEL: func.func @bf16_d32_left_alone
// CHECK: sparsek.select_attention
func.func @bf16_d32_left_alone(%q: memref<1x4x?x32xbf16>, %k: memref<1x2x?x32xbf16>, %v: memref<1x2x?x32xbf16>,
                               %u: memref<1x2x?xf32>, %o: memref<1x4x?x32xbf16>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<1x4x?x32xbf16>, memref<1x2x?x32xbf16>,
                               memref<1x2x?x32xbf16>, memref<1x2x?xf32>)
      k = 8 w = 4 outs(%o : memref<1x4x?x32xbf16>)
  return
}
