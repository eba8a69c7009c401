// select_attention_grad tile first (sparsek-tile-select-attention{grads=true}):
// the forward's block key sets and thresholds, dkey and dvalue zeroed, the
// SPARSEK VJP's support ranges, then one mma.sync kernel of two passes per
// tile (dynamic workgroup memory, atomics into dkey/dvalue/du and the
// support sums), then the mean term. Tiles have 128 rows unless
// grad-tile-rows=64, whatever the forward's tile-rows (which the mma-sync
// forward keeps at 64); with form=scalar the same walk as
// loops. Without grads=true the op is left to sparsek-lower-to-loops, and
// forward=false leaves select_attention alone.
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=grads=true grad-tile-rows=64" | FileCheck %s
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=form=scalar grads=true" | FileCheck %s --check-prefix=SCALAR
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=grads=true" | FileCheck %s --check-prefix=WIDE
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=form=wgmma grads=true grad-tile-rows=128" | FileCheck %s --check-prefix=WIDE
// RUN: sparsek-opt %s -split-input-file -sparsek-tile-select-attention | FileCheck %s --check-prefix=OFF
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=forward=false grads=true" | FileCheck %s --check-prefix=NOFWD
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=grads=true vector-atomics=true" | FileCheck %s --check-prefix=VEC
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-select-attention=grads=true row-selection=true" | FileCheck %s --check-prefix=ROWS

// With row-selection=true the backward's thresholds and lists come from the
// row selection (rows of 1 to 4096 candidates), as the forward's do.
// ROWS-LABEL: func.func @grad_bf16_d128
// ROWS: gpu.launch_func @sparsek_row_selection_0::@row_selection
// ROWS: } else {
// ROWS: gpu.launch_func @sparsek_select_attention_grad_tiles_0::@tiles
// ROWS: gpu.func @row_selection(
// CHECK-LABEL: func.func @grad_bf16_d128
// Sizes (the gradients' too) checked into the status word.
// CHECK: memref.get_global @__sparsek_status
// The block lists and thresholds: [B * Hkv, lists, k] and [B * Hkv, T].
// CHECK: %[[LISTS:.*]] = memref.alloc({{.*}}, %c64{{.*}}) : memref<?x?x?xi32>
// CHECK-NEXT: %[[COUNTS:.*]] = memref.alloc({{.*}}) : memref<?x?xi32>
// CHECK-NEXT: %[[TAU:.*]] = memref.alloc({{.*}}) : memref<?x?xf32>
// The chunked selection fills them; its first lists go last.
// CHECK: memref.dealloc %{{.*}} : memref<?x?x?x64xindex>
// The support sums [B, Hkv, T], zeroed; each key's support range of
// queries (f64 counts) before the tiles.
// CHECK: %[[SUMS:.*]] = memref.alloc({{.*}}) : memref<?x?x?xf32>
// CHECK: memref.atomic_rmw addf {{.*}} : (f64, memref<?x?x?xf64>) -> f64
// 128 threads, 116352 bytes of dynamic workgroup memory at D = Dv = 128
// (two K/V buffers and three slot buffers: the walks are pipelined).
// CHECK: gpu.launch_func @[[MOD:sparsek_select_attention_grad_tiles_0]]::@tiles
// CHECK-SAME: threads in (%c128
// CHECK-SAME: dynamic_shared_memory_size %c116352_i32
// CHECK-SAME: %[[SUMS]] : memref<?x?x?xf32>, %[[LISTS]] : memref<?x?x?xi32>, %[[COUNTS]] : memref<?x?xi32>, %[[TAU]] : memref<?x?xf32>
// The mean term reads the sums after the tiles.
// CHECK: memref.load %[[SUMS]]
// CHECK: memref.dealloc %[[SUMS]]
// CHECK-NOT: sparsek.select_attention_grad
// CHECK: gpu.module @[[MOD]]
// CHECK: gpu.func @tiles(
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// CHECK: gpu.dynamic_shared_memory
// Pass 1 (row statistics): S = Q K^T and dPv = dO V^T, then lse per row.
// Each step copies the next key tile's rows, then waits for its own (one
// group left in flight).
// CHECK: scf.for
// CHECK: nvgpu.device_async_copy
// CHECK: nvgpu.device_async_wait %{{.*}} {numGroups = 1 : i32}
// CHECK: nvvm.mma.sync
// CHECK: math.log2
// Pass 2: the selected support's column sums into du, dS K for dq (K
// through ldmatrix.trans), then (P g)^T dO and dS^T Q added atomically into
// dvalue and dkey.
// CHECK: scf.for
// CHECK: memref.atomic_rmw addf {{.*}} : (f32, memref<?x?x?xf32>) -> f32
// CHECK: nvgpu.ldmatrix {{.*}}transpose = true
// CHECK: nvvm.mma.sync
// CHECK: nvgpu.ldmatrix {{.*}}transpose = true
// CHECK: memref.atomic_rmw addf {{.*}} : (f32, memref<?x?x?x128xf32>) -> f32
// CHECK: memref.atomic_rmw addf {{.*}} : (f32, memref<?x?x?x128xf32>) -> f32
// dq stored per row pair after the loop, then each row's support sum.
// CHECK: vector.store {{.*}} : memref<?x?x?x128xf32>, vector<2xf32>
// CHECK: memref.atomic_rmw addf {{.*}} : (f32, memref<?x?x?xf32>) -> f32

// 128-row tiles (the default): 8 warps, Q, dO, P g and dS of 128 rows
// (165504 bytes).
// WIDE-LABEL: func.func @grad_bf16_d128
// WIDE: gpu.launch_func @sparsek_select_attention_grad_tiles_0::@tiles
// WIDE-SAME: threads in (%c256
// WIDE-SAME: dynamic_shared_memory_size %c165504_i32
// WIDE: known_block_size = array<i32: 256, 1, 1>

// vector-atomics=true: dkey and dvalue take one red.global.add.v2.f32 per
// column pair, at immediate offsets from one address per key row; their
// rows are checked 16-byte aligned too.
// VEC-LABEL: func.func @grad_bf16_d128
// VEC: gpu.module
// VEC: llvm.inline_asm has_side_effects {{.*}}"red.global.add.v2.f32 [$0+0], {$1, $2};", "l,f,f"
// VEC: llvm.inline_asm has_side_effects {{.*}}"red.global.add.v2.f32 [$0+32], {$1, $2};", "l,f,f"
// VEC-NOT: memref.atomic_rmw addf {{.*}} : (f32, memref<?x?x?x128xf32>)

// SCALAR-LABEL: func.func @grad_bf16_d128
// SCALAR-NOT: gpu.launch_func
// SCALAR: scf.for
// SCALAR: math.log
// SCALAR: math.exp
// SCALAR-NOT: sparsek.select_attention_grad

// OFF-LABEL: func.func @grad_bf16_d128
// OFF: sparsek.select_attention_grad
func.func @grad_bf16_d128(%q: memref<?x?x?x128xbf16>, %k: memref<?x?x?x128xbf16>, %v: memref<?x?x?x128xbf16>,
                          %u: memref<?x?x?xf32>, %do: memref<?x?x?x128xbf16>, %dq: memref<?x?x?x128xf32>,
                          %dk: memref<?x?x?x128xf32>, %dv: memref<?x?x?x128xf32>, %du: memref<?x?x?xf32>) {
  sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : memref<?x?x?x128xbf16>, memref<?x?x?x128xbf16>,
      memref<?x?x?x128xbf16>, memref<?x?x?xf32>, memref<?x?x?x128xbf16>) k = 64 w = 32
      outs(%dq, %dk, %dv, %du : memref<?x?x?x128xf32>, memref<?x?x?x128xf32>, memref<?x?x?x128xf32>,
           memref<?x?x?xf32>)
  return
}

// -----

// k = 0: no selection, no score gradient: du zeroed, no lists, and the
// kernel takes no du, sums or thresholds. 67200 bytes at D = Dv = 64 (f16).
// CHECK-LABEL: func.func @grad_window_only
// CHECK-NOT: memref<?x?x?xi32>
// CHECK: gpu.launch_func @{{.*}}::@tiles
// CHECK-SAME: dynamic_shared_memory_size %c67200_i32
// CHECK-SAME: args(%{{.*}} : memref<2x8x?x64xf16>, {{.*}} : memref<2x2x?x64xf32>, %{{.*}} : f32)
func.func @grad_window_only(%q: memref<2x8x?x64xf16>, %k: memref<2x2x?x64xf16>, %v: memref<2x2x?x64xf16>,
                            %u: memref<2x2x?xf32>, %do: memref<2x8x?x64xf16>, %dq: memref<2x8x?x64xf32>,
                            %dk: memref<2x2x?x64xf32>, %dv: memref<2x2x?x64xf32>, %du: memref<2x2x?xf32>) {
  sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : memref<2x8x?x64xf16>, memref<2x2x?x64xf16>,
      memref<2x2x?x64xf16>, memref<2x2x?xf32>, memref<2x8x?x64xf16>) k = 0 w = 16
      outs(%dq, %dk, %dv, %du : memref<2x8x?x64xf32>, memref<2x2x?x64xf32>, memref<2x2x?x64xf32>,
           memref<2x2x?xf32>)
  return
}

// -----

// f32 inputs: the GPU forms leave the op to the loops; the scalar form takes it.
// CHECK-LABEL: func.func @grad_f32_left_alone
// CHECK: sparsek.select_attention_grad
// SCALAR-LABEL: func.func @grad_f32_left_alone
// SCALAR-NOT: sparsek.select_attention_grad
func.func @grad_f32_left_alone(%q: memref<1x4x?x64xf32>, %k: memref<1x2x?x64xf32>, %v: memref<1x2x?x64xf32>,
                               %u: memref<1x2x?xf32>, %do: memref<1x4x?x64xf32>, %dq: memref<1x4x?x64xf32>,
                               %dk: memref<1x2x?x64xf32>, %dv: memref<1x2x?x64xf32>, %du: memref<1x2x?xf32>) {
  sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : memref<1x4x?x64xf32>, memref<1x2x?x64xf32>,
      memref<1x2x?x64xf32>, memref<1x2x?xf32>, memref<1x4x?x64xf32>) k = 4 w = 4
      outs(%dq, %dk, %dv, %du : memref<1x4x?x64xf32>, memref<1x2x?x64xf32>, memref<1x2x?x64xf32>,
           memref<1x2x?xf32>)
  return
}

// -----

// forward=false: select_attention is left to the loops, its backward taken.
// NOFWD-LABEL: func.func @both
// NOFWD: sparsek.select_attention ins
// NOFWD-NOT: sparsek.select_attention_grad
// NOFWD: gpu.launch_func @sparsek_select_attention_grad_tiles
// NOFWD-NOT: sparsek_select_attention_tiles
func.func @both(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>,
                %u: memref<?x?x?xf32>, %o: memref<?x?x?x64xbf16>, %dq: memref<?x?x?x64xf32>,
                %dk: memref<?x?x?x64xf32>, %dv: memref<?x?x?x64xf32>, %du: memref<?x?x?xf32>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>,
      memref<?x?x?x64xbf16>, memref<?x?x?xf32>) k = 8 w = 4 outs(%o : memref<?x?x?x64xbf16>)
  sparsek.select_attention_grad ins(%q, %k, %v, %u, %o : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>,
      memref<?x?x?x64xbf16>, memref<?x?x?xf32>, memref<?x?x?x64xbf16>) k = 8 w = 4
      outs(%dq, %dk, %dv, %du : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>,
           memref<?x?x?xf32>)
  return
}
