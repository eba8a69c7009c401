// bf16/f16 linalg.matmul into f32 on mma.sync tiles: the launch is guarded
// by what cp.async needs (16-byte aligned A and B, 8-byte aligned C, K and N
// multiples of 8), a copy of the op runs otherwise; the kernel stages A and
// B through a two-stage swizzled workgroup ring with cp.async, reads them
// with ldmatrix (B transposed) and multiplies on mma.sync m16n8k16; with
// few tiles K is split and the last CTA of a tile adds the partials. Other
// element types, transposed maps, non-identity layouts and static K or N
// off the 16-byte grid stay for the loops.
// RUN: sparsek-opt %s -split-input-file -sparsek-gpu-matmul-tiles | FileCheck %s
// RUN: sparsek-opt %s -split-input-file -sparsek-gpu-matmul-tiles -sparsek-gpu-matmul-tiles | FileCheck %s --check-prefix=TWICE

// CHECK-LABEL: func.func @bf16
// CHECK-SAME: %[[A:[^:]*]]: memref<?x256xbf16>, %[[B:[^:]*]]: memref<256x512xbf16>, %[[C:[^:]*]]: memref<?x512xf32>
// CHECK: memref.dim %[[A]]
// CHECK: memref.extract_aligned_pointer_as_index %[[A]]
// CHECK: memref.extract_aligned_pointer_as_index %[[B]]
// CHECK: memref.extract_aligned_pointer_as_index %[[C]]
// CHECK: scf.if
// 64-row tiles of M on x, 128-column tiles of N on y, splits of K on z
// (enough to reach 264 CTAs, at most 16, each at least 2 steps of 64),
// partials [splits * M, N] where there are several.
// CHECK: arith.divui %{{.*}}, %c64
// CHECK: arith.constant 16 : index
// CHECK: arith.constant 264 : index
// CHECK: %[[PART:.*]] = memref.alloc(%{{.*}}, %c512{{.*}}) : memref<?x?xf32>
// CHECK: gpu.launch_func @sparsek_matmul_tiles_0::@tiles blocks in (%{{.*}}, %{{.*}}, %[[SPLITS:[^)]*]]) threads in (%c128{{.*}}) args(%[[A]] : memref<?x256xbf16>, %[[B]] : memref<256x512xbf16>, %[[C]] : memref<?x512xf32>, %[[PART]] : memref<?x?xf32>, %[[SPLITS]] : index)
// CHECK: memref.dealloc %[[PART]]
// CHECK: } else {
// CHECK-NEXT: linalg.matmul {sparsek.matmul_fallback} ins(%[[A]], %[[B]] : memref<?x256xbf16>, memref<256x512xbf16>) outs(%[[C]] : memref<?x512xf32>)
// CHECK: gpu.module @sparsek_matmul_tiles_0
// CHECK: memref.global "private" @split_counters : memref<264xi32, #gpu.address_space<global>>
// CHECK: gpu.func @tiles
// CHECK-SAME: workgroup(%[[SA:.*]] : memref<2x64x64xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[SB:.*]] : memref<2x64x128xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64})
// CHECK-SAME: known_block_size = array<i32: 128, 1, 1>
// The first step's copies, then per step: the next step's copies in
// flight, a wait for all but one group, the products.
// CHECK: nvgpu.device_async_copy %{{.*}}, %[[SA]][
// CHECK: nvgpu.device_async_copy %{{.*}}, %[[SB]][
// CHECK: nvgpu.device_async_create_group
// CHECK: scf.for
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 1 : i32}
// CHECK: gpu.barrier
// CHECK: nvgpu.ldmatrix %[[SA]][{{.*}}] {numTiles = 4 : i32, transpose = false}
// CHECK: nvgpu.ldmatrix %[[SB]][{{.*}}] {numTiles = 4 : i32, transpose = true}
// CHECK: nvvm.mma.sync
// CHECK-SAME: bf16
// CHECK: gpu.barrier
// CHECK: scf.yield
// One split: C += the accumulators, pairs of columns, rows and columns in
// range only.
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 0 : i32}
// CHECK: scf.if
// CHECK: scf.if
// CHECK: vector.load %{{.*}} : memref<?x512xf32>, vector<2xf32>
// CHECK: arith.addf %{{.*}} : vector<2xf32>
// CHECK: vector.store
// Several: partials stored, a fence, thread 0's arrival, whose answer an
// OR-reducing barrier hands to every thread; the last CTA sums the partials
// in split order into C.
// CHECK: } else {
// CHECK: vector.store %{{.*}} : memref<?x?xf32>, vector<2xf32>
// CHECK: nvvm.memory.barrier
// CHECK: gpu.barrier
// CHECK: memref.get_global @split_counters
// CHECK: memref.atomic_rmw addi
// CHECK: nvvm.barrier #nvvm.reduction<or> %{{.*}} -> i32
// CHECK: nvvm.memory.barrier
// CHECK: scf.for
// CHECK: vector.load %{{.*}} : memref<?x?xf32>, vector<2xf32>
// CHECK: vector.store %{{.*}} : memref<?x512xf32>, vector<2xf32>
// The pass leaves the copy in the else branch alone when it runs again.
// TWICE-LABEL: func.func @bf16
// TWICE: gpu.launch_func @sparsek_matmul_tiles_0::@tiles
// TWICE-NOT: gpu.launch_func
// TWICE: linalg.matmul
func.func @bf16(%a: memref<?x256xbf16>, %b: memref<256x512xbf16>, %c: memref<?x512xf32>) {
  linalg.matmul ins(%a, %b : memref<?x256xbf16>, memref<256x512xbf16>) outs(%c : memref<?x512xf32>)
  return
}

// -----

// Dynamic K and N: the guard checks at run time that they are multiples of 8.
// CHECK-LABEL: func.func @f16_dynamic
// CHECK: %[[K:.*]] = memref.dim %arg0, %c1
// CHECK: %[[N:.*]] = memref.dim %arg1, %c1
// CHECK: arith.remui %[[K]], %c8
// CHECK: arith.remui %[[N]], %c8
// CHECK: gpu.launch_func @sparsek_matmul_tiles_0::@tiles
// CHECK: nvvm.mma.sync
// CHECK-SAME: f16
func.func @f16_dynamic(%a: memref<?x?xf16>, %b: memref<?x?xf16>, %c: memref<?x?xf32>) {
  linalg.matmul ins(%a, %b : memref<?x?xf16>, memref<?x?xf16>) outs(%c : memref<?x?xf32>)
  return
}

// -----

// CHECK-LABEL: func.func @left_for_the_loops
// CHECK-NOT: gpu.launch_func
// CHECK: linalg.matmul ins(%arg0, %arg1 : memref<?x64xf32>
// CHECK: linalg.matmul ins(%arg3, %arg4 : memref<?x12xbf16>
// CHECK: linalg.matmul indexing_maps
// CHECK: linalg.matmul ins(%arg0, %arg8 : memref<?x64xf32>
// CHECK: linalg.matmul ins(%arg9, %arg5
// CHECK-NOT: gpu.launch_func
func.func @left_for_the_loops(%f: memref<?x64xf32>, %fw: memref<64x64xf32>, %fc: memref<?x64xf32>,
                              %k12: memref<?x12xbf16>, %w12: memref<12x64xbf16>,
                              %bt: memref<64x256xbf16>, %a: memref<?x256xbf16>, %c: memref<?x64xf32>,
                              %fw2: memref<64x64xf32, strided<[128, 1]>>,
                              %h: memref<?x64xbf16, strided<[128, 1]>>, %c256: memref<?x256xf32>) {
  // f32 operands (no tensor-core form that keeps f32 precision).
  linalg.matmul ins(%f, %fw : memref<?x64xf32>, memref<64x64xf32>) outs(%fc : memref<?x64xf32>)
  // K = 12: rows of A are not 16-byte multiples.
  linalg.matmul ins(%k12, %w12 : memref<?x12xbf16>, memref<12x64xbf16>) outs(%fc : memref<?x64xf32>)
  // B transposed.
  linalg.matmul indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>,
                                 affine_map<(d0, d1, d2) -> (d1, d2)>,
                                 affine_map<(d0, d1, d2) -> (d0, d1)>]
      ins(%a, %bt : memref<?x256xbf16>, memref<64x256xbf16>) outs(%c : memref<?x64xf32>)
  // A strided B (f32 as well).
  linalg.matmul ins(%f, %fw2 : memref<?x64xf32>, memref<64x64xf32, strided<[128, 1]>>) outs(%fc : memref<?x64xf32>)
  // A strided A.
  linalg.matmul ins(%h, %bt : memref<?x64xbf16, strided<[128, 1]>>, memref<64x256xbf16>) outs(%c256 : memref<?x256xf32>)
  return
}
