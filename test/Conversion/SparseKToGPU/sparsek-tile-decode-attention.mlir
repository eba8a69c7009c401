// decode_attention tile first: host checks (sizes, 16-byte rows), the split
// count and the partials, then one launch of a block per (split, KV head,
// sequence) whose lanes share 16-byte K/V loads across the group's query
// heads, reduce dot products with xor shuffles, keep online softmaxes in
// registers and merge splits behind an atomic counter; or, with
// form=scalar, the same walk as loops. Bad cache states and scores are
// checked in the walk and reported through the device status (word and
// mirror, two launch operands) with the loop form's codes: 4
// (INVALID_CACHE_STATE), 1 (INVALID_SCORE). Ops the kernel does not cover
// stay.
// RUN: sparsek-opt %s -split-input-file -sparsek-tile-decode-attention | FileCheck %s
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-decode-attention=form=scalar target-blocks=100" | FileCheck %s --check-prefix=SCALAR
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-decode-attention=math=mma" | FileCheck %s --check-prefix=MMA
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile-decode-attention=form=scalar math=mma" | FileCheck %s --check-prefix=SCALAR-MMA

// CHECK-LABEL: func.func @bf16_d128_g4
// CHECK-SAME: %[[Q:[^:]*]]: memref<?x32x128xbf16>, %[[KC:[^:]*]]: memref<?x8x2560x128xbf16>, %[[VC:[^:]*]]: memref<?x8x2560x128xbf16>
// CHECK: %[[B:.*]] = memref.dim %[[Q]], %{{.*}} : memref<?x32x128xbf16>
// Sizes (status 2), then 16-byte aligned rows (status 6).
// CHECK: arith.constant 2 : i32
// CHECK: memref.extract_aligned_pointer_as_index %[[KC]]
// CHECK: arith.constant 6 : i32
// Splits: ceil(2112 / (B * 8)), at most (k + w) / 128 = 20, at least 1.
// CHECK: %[[PAIRS:.*]] = arith.muli %[[B]], %{{.*}} : index
// CHECK: arith.constant 2112 : index
// CHECK: arith.constant 20 : index
// CHECK: %[[SPLITS:.*]] = arith.maxsi
// Partials [pairs * splits, G, Dv + 32] only when splits > 1.
// CHECK: %[[PART:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?x160xf32>
// The device status: the module's globals until sparsek-gpu-device-status.
// CHECK: %[[WORD:.*]] = memref.get_global @__sparsek_status : memref<i32>
// CHECK: %[[MIRROR:.*]] = memref.get_global @__sparsek_status_mirror : memref<i32>
// CHECK: gpu.launch_func @[[MOD:sparsek_decode_tiles_0]]::@decode_g4 blocks in (%[[SPLITS]], %{{.*}}, %[[B]]) threads in (%c128
// CHECK-SAME: %[[PART]] : memref<?x?x160xf32>, %[[SPLITS]] : index, %[[WORD]] : memref<i32>, %[[MIRROR]] : memref<i32>)
// CHECK: memref.dealloc %[[PART]]
// CHECK-NOT: sparsek.decode_attention
// CHECK: gpu.module @[[MOD]]
// CHECK: memref.global "private" @[[CTR:split_counters]] : memref<2112xi32, #gpu.address_space<global>> = dense<0>
// CHECK: gpu.func @decode_g4(
// CHECK-SAME: %{{[^:]*}}: index, %[[KWORD:[^:]*]]: memref<i32>, %[[KMIRROR:[^:]*]]: memref<i32>)
// CHECK-SAME: workgroup(%[[SO:.*]] : memref<4x4x128xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[SM:.*]] : memref<4x4xf32, #gpu.address_space<workgroup>>, %[[SL:.*]] : memref<4x4xf32, #gpu.address_space<workgroup>>, %[[SF:.*]] : memref<2xi32, #gpu.address_space<workgroup>>,
// The cp.async rings: [stage, warp, chunk, lane, 8] K and V, [.., lane] scores.
// CHECK-SAME: %[[RK:.*]] : memref<2x4x4x32x8xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[RV:.*]] : memref<2x4x4x32x8xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[RS:.*]] : memref<2x4x4x32xf32, #gpu.address_space<workgroup>>)
// CHECK-SAME: kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// The block's cache state: 0 <= pool count <= k (one unsigned compare),
// position >= 0; then tau not NaN. A bad state empties the walk.
// CHECK: arith.cmpi ule, %{{.*}}, %c2048 : index
// CHECK: arith.cmpi sge
// CHECK: arith.cmpf uno
// K, V and scores as rows: one row base per block.
// CHECK: memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2], [3]] : memref<?x8x2560x128xbf16> into memref<?x128xbf16>
// CHECK: memref.collapse_shape %{{.*}} {{\[}}[0, 1, 2]] : memref<?x8x2560xf32> into memref<?xf32>
// The flag of skipped invalid pool scores: cleared by thread 0 first.
// CHECK: memref.store %c0_i32{{.*}}, %[[SF]][%[[FLAG:.*]]] : memref<2xi32
// CHECK: gpu.barrier
// The copies' shared addresses: this lane's entries of the K, V and score
// rings.
// CHECK: memref.extract_aligned_pointer_as_index %[[RK]]
// CHECK: memref.extract_aligned_pointer_as_index %[[RV]]
// CHECK: memref.extract_aligned_pointer_as_index %[[RS]]
// Tile 0 into stage 0 (where the walk is not empty): per chunk a 16-byte K
// and V copy (zero-filled past the walk: the byte count is a select) and
// the slot's 4-byte score, from the slot's i32 number.
// CHECK: scf.if
// CHECK: arith.cmpi slt, %{{.*}}, %{{.*}} : i32
// CHECK: nvvm.cp.async.shared.global %{{.*}}, %{{.*}}, 16, cache =  cg, %{{.*}} : !llvm.ptr<3>, !llvm.ptr<1>, i32
// CHECK: nvvm.cp.async.shared.global %{{.*}}, %{{.*}}, 16, cache =  cg
// CHECK: nvvm.cp.async.shared.global %{{.*}}, %{{.*}}, 4, cache =  ca
// CHECK: nvvm.cp.async.commit.group
// Lane 0 of each warp prefetches its rows further ahead into L2 (K and V,
// pool and window pieces), before the loop and in it.
// CHECK: nvvm.cp.async.bulk.prefetch %{{.*}}, %{{.*}} : <1>
// q of the 4 heads: one 16-byte chunk each per lane.
// CHECK-COUNT-4: vector.load %{{.*}} {alignment = 16 : i64} : memref<?x32x128xbf16>, vector<8xbf16>
// CHECK: scf.for
// CHECK: nvvm.cp.async.bulk.prefetch
// Per iteration: the next tile's copies, then this tile's (one group left
// pending), read back from the ring by the lane that copied them.
// CHECK-COUNT-12: nvvm.cp.async.shared.global
// CHECK: nvvm.cp.async.commit.group
// CHECK: nvvm.cp.async.wait.group 1
// CHECK: vector.load %[[RK]][{{.*}}] {alignment = 16 : i64} : memref<2x4x4x32x8xbf16, #gpu.address_space<workgroup>>, vector<8xbf16>
// The pool slot's score, its gate in f32 (equal to sparsek.select's f64
// gate of the f32 tau: emitClipGate).
// CHECK: memref.load %[[RS]]
// CHECK: arith.subf %{{.*}} : f32
// CHECK: arith.maxnumf
// CHECK: arith.minnumf
// CHECK-COUNT-3: vector.load %[[RK]]
// CHECK-COUNT-4: vector.load %[[RV]]
// Dot products: a chain of 8 fmas per lane for each of the 16 (head,
// chunk) pairs, then summed over the 16 lanes of a row by a transposing
// butterfly (8 + 4 + 2 + 1 xor shuffles by 8, 4, 2, 1) and read back from
// the lanes that hold the sums (16 indexed shuffles within 16-lane rows:
// c = 16 << 8 | 15 = 4111).
// CHECK: arith.mulf %{{.*}} : f32
// CHECK-COUNT-7: math.fma %{{.*}} : f32
// CHECK-COUNT-8: gpu.shuffle  xor %{{.*}}, %c8_i32
// CHECK-COUNT-4: gpu.shuffle  xor %{{.*}}, %c4_i32
// CHECK-COUNT-2: gpu.shuffle  xor %{{.*}}, %c2_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c1_i32
// CHECK-NOT: gpu.shuffle
// CHECK-COUNT-16: nvvm.shfl.sync  idx %{{.*}}, %{{.*}}, %{{.*}}, %c4111_i32 : f32 -> f32
// The online softmax's exp2 as ex2.approx.ftz (no denormal fix-up).
// CHECK-NOT: math.exp2
// CHECK: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f32"(%{{.*}}) : (f32) -> f32
// CHECK: vector.fma
// A lane that skips an invalid pool score sets the flag (no atomic, no
// carried value).
// CHECK: scf.if
// CHECK-NEXT: arith.constant 1 : i32
// CHECK-NEXT: memref.store %{{.*}}, %[[SF]][%[[FLAG]]]
// CHECK: scf.yield
// No copy outlives the walk (the last, zero-filled tile).
// CHECK: nvvm.cp.async.wait.group 0
// The two row classes of a warp merged (lane xor 16), then the warps.
// CHECK: gpu.shuffle  xor %{{.*}}, %c16_i32
// CHECK: vector.store %{{.*}}, %[[SO]]
// CHECK: gpu.barrier
// One split: the output directly; several: the partials.
// CHECK: memref.store %{{.*}}, %{{.*}} : memref<?x?x160xf32>
// CHECK: memref.store %{{.*}}, %{{.*}} : memref<?x32x128xbf16>
// The last block of (b, h) to arrive merges the splits and resets the counter.
// CHECK: nvvm.memory.barrier <gpu>
// CHECK: gpu.barrier
// CHECK: %[[C:.*]] = memref.get_global @[[CTR]] : memref<2112xi32, #gpu.address_space<global>>
// CHECK: memref.atomic_rmw addi %{{.*}}, %[[C]][%{{.*}}] : (i32, memref<2112xi32, #gpu.address_space<global>>) -> i32
// CHECK: memref.store %{{.*}}, %[[C]][%{{.*}}] : memref<2112xi32, #gpu.address_space<global>>
// CHECK: memref.store %{{.*}}, %[[SF]]
// CHECK: gpu.barrier
// CHECK: nvvm.memory.barrier <gpu>
// One online pass over the splits: per thread 4 columns of one head.
// CHECK: scf.for
// CHECK: vector.load %{{.*}} {alignment = 8 : i64} : memref<?x?x160xf32>, vector<2xf32>
// CHECK: vector.load %{{.*}} {alignment = 16 : i64} : memref<?x?x160xf32>, vector<4xf32>
// CHECK: scf.yield
// CHECK: vector.store %{{.*}} : memref<?x32x128xbf16>, vector<4xbf16>
// At the end thread 0 reports: the cache state (4), then tau or a flagged
// score (1), each by compare-and-swap 0 -> code on the status word and,
// if it won, the code in the mirror.
// CHECK: arith.cmpi eq, %{{.*}}, %c4_i32
// CHECK: memref.generic_atomic_rmw %[[KWORD]][] : memref<i32>
// CHECK: arith.select %{{.*}}, %c4_i32{{.*}}, %{{.*}} : i32
// CHECK: memref.store %c4_i32{{.*}}, %[[KMIRROR]][] : memref<i32>
// CHECK: memref.load %[[SF]][%[[FLAG]]]
// CHECK: memref.generic_atomic_rmw %[[KWORD]][] : memref<i32>
// CHECK: arith.select %{{.*}}, %c1_i32{{.*}}, %{{.*}} : i32
// CHECK: memref.store %c1_i32{{.*}}, %[[KMIRROR]][] : memref<i32>
// CHECK: gpu.return
// math=mma: the same launch; per warp and iteration 16 slots on mma.sync.
// MMA-LABEL: func.func @bf16_d128_g4
// MMA: gpu.launch_func @[[MOD:sparsek_decode_tiles_0]]::@decode_mma_g4 blocks in
// MMA: gpu.module @[[MOD]]
// MMA: gpu.func @decode_mma_g4(
// No rings: the warps' states and the flags only.
// MMA-SAME: workgroup(%{{[^:]*}} : memref<4x4x128xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}, %[[MM:[^:]*]] : memref<4x4xf32, #gpu.address_space<workgroup>>, %[[ML:[^:]*]] : memref<4x4xf32, #gpu.address_space<workgroup>>, %{{[^:]*}} : memref<2xi32, #gpu.address_space<workgroup>>) kernel
// A of QK: q of head lane / 4, 4 chunks of 8 columns, pairs of columns.
// MMA-COUNT-4: vector.load %{{.*}} {alignment = 16 : i64} : memref<?x32x128xbf16>, vector<8xbf16>
// An iteration's loads, the first one's before the loop (none where the
// walk is empty). K: 4 chunks of each of the two keys (one per key tile) of
// this lane; V: 16 columns of its 4 keys; their scores.
// MMA: scf.if
// MMA-COUNT-8: vector.load %{{.*}} {alignment = 16 : i64} : memref<?x128xbf16>, vector<8xbf16>
// MMA-COUNT-4: vector.load %{{.*}} {alignment = 16 : i64} : memref<?x128xbf16>, vector<16xbf16>
// MMA-COUNT-4: memref.load %{{.*}} : memref<?xf32>
// MMA: scf.for
// Each iteration first loads the next one's (their latency overlaps this
// iteration's math).
// MMA: scf.if
// MMA-COUNT-8: vector.load %{{.*}} {alignment = 16 : i64} : memref<?x128xbf16>, vector<8xbf16>
// MMA-COUNT-4: vector.load %{{.*}} {alignment = 16 : i64} : memref<?x128xbf16>, vector<16xbf16>
// MMA-COUNT-4: memref.load %{{.*}} : memref<?xf32>
// MMA: arith.subf %{{.*}} : f32
// S = Q K^T: 8 k-steps per key tile (D = 128), f32 accumulators.
// MMA: vector.shuffle %{{.*}} [0, 9] : vector<8xbf16>, vector<8xbf16>
// MMA-COUNT-16: nvvm.mma.sync A[{{.*}}]  B[{{.*}}]  C[{{.*}}]  {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// The head's max over its quad, the rescale factors of this lane's O^T
// heads from lanes 8 (lane % 4) and + 4.
// MMA: gpu.shuffle  xor %{{.*}}, %c1_i32
// MMA: gpu.shuffle  xor %{{.*}}, %c2_i32
// MMA: math.exp2
// MMA: gpu.shuffle  idx
// MMA: gpu.shuffle  idx
// O^T += V^T P^T: 8 row tiles, A paired from two keys' V columns.
// MMA: vector.shuffle %{{.*}} [0, 16] : vector<16xbf16>, vector<16xbf16>
// MMA-COUNT-8: nvvm.mma.sync
// MMA: scf.yield
// The sums over the quad, then (max, sum) from lane % 4 = 0, O^T columns.
// MMA: gpu.shuffle  xor %{{.*}}, %c1_i32
// MMA: gpu.shuffle  xor %{{.*}}, %c2_i32
// MMA: memref.store %{{.*}}, %[[MM]]
// MMA: memref.store %{{.*}}, %[[ML]]
// MMA: gpu.barrier
// MMA: memref.atomic_rmw addi
// MMA-LABEL: func.func @f16_d64_dynamic_group
// MMA: gpu.launch_func @[[MOD:sparsek_decode_tiles_0]]::@decode_mma_g1
// MMA: gpu.launch_func @[[MOD]]::@decode_mma_g8
// MMA: default {
// MMA-NEXT: sparsek.decode_attention
// MMA: gpu.func @decode_mma_g1(
// D = 64: 4 k-steps per key tile, 4 row tiles.
// MMA: vector.load %{{.*}} : memref<?x64xf16>, vector<8xf16>
// MMA-NOT: memref<?xf32>
// MMA-COUNT-8: nvvm.mma.sync
// MMA-NOT: nvvm.mma.sync
// MMA: gpu.shuffle  idx
// MMA-COUNT-4: nvvm.mma.sync
// MMA-NOT: nvvm.mma.sync
// MMA: scf.yield
// MMA-LABEL: func.func @not_covered
// MMA-NOT: gpu.launch_func
// MMA-COUNT-4: sparsek.decode_attention
// The scalar form of the mma walk: one class of 16 slots per warp.
// SCALAR-MMA-LABEL: func.func @bf16_d128_g4
// SCALAR-MMA-NOT: gpu.
// SCALAR-MMA: arith.constant 2048 : index
// SCALAR-MMA: math.exp2
// SCALAR-MMA: memref.atomic_rmw addi
// SCALAR-LABEL: memref.global "private" @sparsek_decode_split_counters : memref<100xi32> = dense<0>
// SCALAR-LABEL: func.func @bf16_d128_g4
// SCALAR-NOT: gpu.
// SCALAR: memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?x160xf32>
// SCALAR: scf.for
// Per block: the cache state (code 4), tau (code 1), through the device
// status globals (on the CPU the word is the host status word).
// SCALAR: arith.cmpi ule, %{{.*}}, %c2048 : index
// SCALAR: arith.cmpf uno
// SCALAR: memref.get_global @__sparsek_status_mirror
// SCALAR: memref.generic_atomic_rmw
// SCALAR: arith.select %{{.*}}, %c4_i32, %{{.*}} : i32
// SCALAR: memref.generic_atomic_rmw
// SCALAR: arith.select %{{.*}}, %c1_i32, %{{.*}} : i32
// Per pool slot whose score is NaN or +inf: code 1, then the slot skipped.
// SCALAR: memref.load %{{.*}} : memref<?x8x2560xf32>
// SCALAR: memref.generic_atomic_rmw
// SCALAR: arith.select %{{.*}}, %c1_i32, %{{.*}} : i32
// SCALAR: math.exp2
// SCALAR: memref.atomic_rmw addi
// SCALAR-NOT: sparsek.decode_attention
func.func @bf16_d128_g4(%q: memref<?x32x128xbf16>, %kc: memref<?x8x2560x128xbf16>, %vc: memref<?x8x2560x128xbf16>,
                        %sc: memref<?x8x2560xf32>, %tau: memref<?x8xf32>, %cnt: memref<?x8xi32>,
                        %pos: memref<?xi64>, %o: memref<?x32x128xbf16>) {
  sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : memref<?x32x128xbf16>,
      memref<?x8x2560x128xbf16>, memref<?x8x2560x128xbf16>, memref<?x8x2560xf32>, memref<?x8xf32>,
      memref<?x8xi32>, memref<?xi64>) k = 2048 w = 512 outs(%o : memref<?x32x128xbf16>)
  return
}

// -----

// Head counts known only at run time: a kernel per G in 1..8, picked by an
// scf.index_switch whose default keeps the op for the loops. D = 64: 8
// lanes per row, 4 rows per warp-wide load. k = 0: no scores (tau and the
// pool count are still checked, as the loop form checks them).
// CHECK-LABEL: func.func @f16_d64_dynamic_group
// CHECK: gpu.launch_func @[[MOD:sparsek_decode_tiles_0]]::@decode_g1
// CHECK: gpu.launch_func @[[MOD]]::@decode_g2
// CHECK: gpu.launch_func @[[MOD]]::@decode_g8
// CHECK: default {
// CHECK-NEXT: sparsek.decode_attention
// CHECK: gpu.module @[[MOD]]
// CHECK: gpu.func @decode_g1(
// CHECK: memref.extract_aligned_pointer_as_index %{{.*}} : memref<2x4x4x32x8xf16, #gpu.address_space<workgroup>>
// CHECK-NOT: memref<2x4x4x32xf32
// CHECK: nvvm.cp.async.shared.global %{{.*}}, %{{.*}}, 16, cache =  cg
// CHECK-NOT: cache =  ca
// CHECK: gpu.shuffle  xor %{{.*}}, %c4_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c8_i32
// CHECK: gpu.shuffle  xor %{{.*}}, %c16_i32
// CHECK: gpu.func @decode_g8(
// SCALAR-LABEL: func.func @f16_d64_dynamic_group
// SCALAR: math.exp2
// SCALAR: sparsek.decode_attention
// SCALAR-NEXT: }
func.func @f16_d64_dynamic_group(%q: memref<?x?x64xf16>, %kc: memref<?x?x40x64xf16>, %vc: memref<?x?x40x64xf16>,
                                 %sc: memref<?x?x40xf32>, %tau: memref<?x?xf32>, %cnt: memref<?x?xi32>,
                                 %pos: memref<?xi64>, %o: memref<?x?x64xf16>) {
  sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : memref<?x?x64xf16>,
      memref<?x?x40x64xf16>, memref<?x?x40x64xf16>, memref<?x?x40xf32>, memref<?x?xf32>,
      memref<?x?xi32>, memref<?xi64>) k = 0 w = 40 outs(%o : memref<?x?x64xf16>)
  return
}

// -----

// What the kernel does not cover stays for sparsek-lower-to-loops: f32
// (the scalar form takes it), G = 16, D != Dv, other head dims.
// CHECK-LABEL: func.func @not_covered
// CHECK-NOT: gpu.launch_func
// CHECK-COUNT-4: sparsek.decode_attention
// SCALAR-LABEL: func.func @not_covered
// SCALAR: math.exp2
// SCALAR-COUNT-3: sparsek.decode_attention
func.func @not_covered(%q: memref<?x4x64xf32>, %kc: memref<?x2x12x64xf32>, %sc: memref<?x2x12xf32>,
                       %tau: memref<?x2xf32>, %cnt: memref<?x2xi32>, %pos: memref<?xi64>,
                       %q16: memref<?x32x64xbf16>, %k16: memref<?x2x12x64xbf16>, %o16: memref<?x32x64xbf16>,
                       %qd: memref<?x4x64xbf16>, %kd: memref<?x2x12x64xbf16>, %vd: memref<?x2x12x128xbf16>,
                       %od: memref<?x4x128xbf16>, %q32: memref<?x4x32xbf16>, %k32: memref<?x2x12x32xbf16>) {
  sparsek.decode_attention ins(%q, %kc, %kc, %sc, %tau, %cnt, %pos : memref<?x4x64xf32>,
      memref<?x2x12x64xf32>, memref<?x2x12x64xf32>, memref<?x2x12xf32>, memref<?x2xf32>,
      memref<?x2xi32>, memref<?xi64>) k = 8 w = 4 outs(%q : memref<?x4x64xf32>)
  sparsek.decode_attention ins(%q16, %k16, %k16, %sc, %tau, %cnt, %pos : memref<?x32x64xbf16>,
      memref<?x2x12x64xbf16>, memref<?x2x12x64xbf16>, memref<?x2x12xf32>, memref<?x2xf32>,
      memref<?x2xi32>, memref<?xi64>) k = 8 w = 4 outs(%o16 : memref<?x32x64xbf16>)
  sparsek.decode_attention ins(%qd, %kd, %vd, %sc, %tau, %cnt, %pos : memref<?x4x64xbf16>,
      memref<?x2x12x64xbf16>, memref<?x2x12x128xbf16>, memref<?x2x12xf32>, memref<?x2xf32>,
      memref<?x2xi32>, memref<?xi64>) k = 8 w = 4 outs(%od : memref<?x4x128xbf16>)
  sparsek.decode_attention ins(%q32, %k32, %k32, %sc, %tau, %cnt, %pos : memref<?x4x32xbf16>,
      memref<?x2x12x32xbf16>, memref<?x2x12x32xbf16>, memref<?x2x12xf32>, memref<?x2xf32>,
      memref<?x2xi32>, memref<?xi64>) k = 8 w = 4 outs(%q32 : memref<?x4x32xbf16>)
  return
}
