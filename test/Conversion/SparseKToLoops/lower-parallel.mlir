// parallel-loops: score, attention and decode become scf.parallel nests
// (blocks of queries or heads around one iteration per query) with
// per-iteration stack scratch, select a sequence of nests parallel over
// candidates, chunks and queries with scratch allocated outside; ready for
// gpu-map-parallel-loops; sizes are checked outside.
// RUN: sparsek-opt %s -split-input-file "-sparsek-lower-to-loops=parallel-loops query-block=32" | FileCheck %s
// RUN: not sparsek-opt %s -split-input-file "-sparsek-lower-to-loops=parallel-loops query-block=0" 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: not sparsek-opt %s -split-input-file "-sparsek-lower-to-loops=parallel-loops select-chunk=-1" 2>&1 | FileCheck %s --check-prefix=BADCHUNK

// BAD: query-block must be positive, got 0
// BADCHUNK: select-chunk must be 0 (automatic) or positive, got -1

// CHECK-LABEL: func.func @attention
// Rows of 16 f32 (64 bytes) are read as aligned vectors, so the host checks
// that q, key, value and out start 16-byte aligned (status 6 otherwise).
// CHECK: memref.extract_aligned_pointer_as_index %arg0
// CHECK: memref.extract_aligned_pointer_as_index %arg5
// CHECK: %[[C32:.*]] = arith.constant 32 : index
// The query blocks first (the grid's x, whose limit of 2^31 - 1 blocks long
// sequences need; y and z stop at 65535), then batch and head.
// CHECK: scf.parallel (%[[T0:.*]], %[[B:.*]], %[[HQ:.*]]) = ({{.*}}) to ({{.*}}) step (%[[C32]], {{.*}})
// The inner bound depends on the block (affine.min): canonicalization must
// not merge the loops, or one GPU thread would run the whole block.
// CHECK:   %[[N:.*]] = affine.min #{{.*}}(%[[T0]])[%{{.*}}]
// CHECK:   scf.parallel (%[[TI:.*]]) = (%{{.*}}) to (%[[N]])
// CHECK:     %[[T:.*]] = arith.addi %[[T0]], %[[TI]]
// The query row once into registers, then per key a vector dot product and
// a vector update of the accumulator (loop-carried, no memory scratch).
// CHECK-NOT:   memref.alloca
// CHECK:       vector.load %{{.*}} {alignment = 16 : i64} : memref<1x4x?x16xf32>, vector<16xf32>
// CHECK:       scf.for {{.*}} -> (f32, f32, vector<16xf32>)
// CHECK:         vector.reduction <add>, %{{.*}} fastmath<reassoc> : vector<16xf32> into f32
// CHECK:         vector.fma
// CHECK:       vector.store %{{.*}} : memref<1x4x?x16xf32>, vector<16xf32>
// CHECK-NOT: memref.alloc(
// CHECK-NOT: memref.dealloc
func.func @attention(%q: memref<1x4x?x16xf32>, %k: memref<1x2x?x16xf32>, %v: memref<1x2x?x16xf32>,
                     %i: memref<1x2x?x4xi32>, %g: memref<1x2x?x4xf32>, %o: memref<1x4x?x16xf32>) {
  sparsek.attention ins(%q, %k, %v, %i, %g : memref<1x4x?x16xf32>, memref<1x2x?x16xf32>,
                        memref<1x2x?x16xf32>, memref<1x2x?x4xi32>, memref<1x2x?x4xf32>)
      w = 4 outs(%o : memref<1x4x?x16xf32>)
  return
}

// -----

// Decode is split over the slots (split-K): one iteration per (sequence,
// query head, split of 64 slots) writes a partial softmax (k + w = 12: one
// split), then one per (sequence, query head) merges them. The kernel
// checks the cache itself (no host scan of pool counts) and reports through
// the device status: a pool count outside [0, k] or a negative position is
// INVALID_CACHE_STATE (4) and skips the split, a NaN tau or an invalid pool
// score INVALID_SCORE (1), the score skipped.
// CHECK-LABEL: func.func @decode
// CHECK-NOT: memref.load %{{.*}} : memref<?x2xi32>
// CHECK: %[[PMAX:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?x1xf32>
// CHECK: %[[PACC:.*]] = memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?x1x16xf32>
// CHECK: scf.parallel (%{{.*}}, %{{.*}}, %{{.*}}) = ({{.*}}) to (%{{.*}}, %{{.*}}, %c1{{.*}})
// CHECK:   scf.parallel
// CHECK:     vector.load %{{.*}} : memref<?x4x16xf32>, vector<16xf32>
// CHECK:     %[[N:.*]] = memref.load %{{.*}} : memref<?x2xi32>
// CHECK:     %[[P:.*]] = memref.load %{{.*}} : memref<?xi64>
// CHECK:     scf.if
// CHECK:       memref.get_global @__sparsek_status : memref<i32>
// CHECK:       memref.generic_atomic_rmw
// CHECK:         arith.select %{{.*}}, %c4_i32, %{{.*}} : i32
// CHECK:     scf.if %{{.*}} -> (f32, f32, vector<16xf32>)
// CHECK:       arith.cmpf ord
// CHECK:       memref.generic_atomic_rmw
// CHECK:         arith.select %{{.*}}, %c1_i32, %{{.*}} : i32
// CHECK:       scf.for
// CHECK:         memref.load %{{.*}} : memref<?x2x12xf32>
// CHECK:         arith.cmpf olt
// CHECK:         memref.generic_atomic_rmw
// CHECK:     vector.store %{{.*}}, %[[PACC]]
// CHECK: scf.parallel
// CHECK:   scf.parallel
// CHECK:     vector.load %[[PACC]]
// CHECK:     vector.store %{{.*}} : memref<?x4x16xf32>, vector<16xf32>
// CHECK: memref.dealloc %[[PMAX]]
func.func @decode(%q: memref<?x4x16xf32>, %kc: memref<?x2x12x16xf32>, %vc: memref<?x2x12x16xf32>,
                  %sc: memref<?x2x12xf32>, %tau: memref<?x2xf32>, %cnt: memref<?x2xi32>,
                  %pos: memref<?xi64>, %o: memref<?x4x16xf32>) {
  sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : memref<?x4x16xf32>,
      memref<?x2x12x16xf32>, memref<?x2x12x16xf32>, memref<?x2x12xf32>, memref<?x2xf32>,
      memref<?x2xi32>, memref<?xi64>) k = 8 w = 4 outs(%o : memref<?x4x16xf32>)
  return
}

// -----

// Score: blocks of tokens of one (b, h), one token per iteration, the
// reduction over C carried in f32.
// CHECK-LABEL: func.func @score
// CHECK: scf.parallel (%[[T0:.*]], %[[B:.*]], %[[H:.*]]) = ({{.*}}) to ({{.*}}) step (%{{.*}}, {{.*}})
// CHECK:   %[[N:.*]] = affine.min
// CHECK:   scf.parallel (%[[TI:.*]]) = (%{{.*}}) to (%[[N]])
// CHECK:     %[[T:.*]] = arith.addi %[[T0]], %[[TI]]
// CHECK:       scf.for {{.*}} iter_args(%{{.*}} = %{{.*}}) -> (f32)
// CHECK:         arith.extf %{{.*}} : bf16 to f32
// CHECK:       memref.store %{{.*}}, %{{.*}}[%[[B]], %[[H]], %[[T]]] : memref<?x2x?xf32>
func.func @score(%x: memref<?x?x64xbf16>, %w: memref<2x64xbf16>, %u: memref<?x2x?xf32>) {
  sparsek.score ins(%x, %w : memref<?x?x64xbf16>, memref<2x64xbf16>) outs(%u : memref<?x2x?xf32>)
  return
}

// -----

// Select: parallel over chunks of candidates, never one thread per row
// (ChunkedSelection.h). Scratch is host allocations; then, in order:
// per-candidate chunk ranks, the scan rounds (a host loop around a kernel,
// ping-pong buffers picked on the host), the boundary taus, the per-query
// thresholds and one iteration per query writing its row. NaN and +inf
// scores are reported through the device status (generic_atomic_rmw on the
// status word): candidates by the per-candidate kernel, window-only
// positions by a kernel of their own.
// CHECK-LABEL: func.func @select
// The window-only positions' kernel: a load, a report if invalid.
// CHECK: scf.parallel
// CHECK:   scf.parallel
// CHECK:     memref.load %{{.*}} : memref<?x2x?xf32>
// CHECK:     memref.get_global @__sparsek_status
// CHECK:     memref.generic_atomic_rmw
// CHECK: %[[L0:.*]] = memref.alloc(%[[ROWS:.*]], %[[N:.*]], %{{.*}}) : memref<?x?x?xf32>
// CHECK: memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?xf32>
// Chunk lists: one iteration per candidate, which reports its own score if
// invalid, ranked by a scan of its chunk (which only skips invalid ones),
// counting in i32, unrolled by 8 (then the rest one by one).
// CHECK: scf.parallel
// CHECK:   scf.parallel
// CHECK:     memref.generic_atomic_rmw
// CHECK:     scf.for {{.*}} step %c8{{.*}} -> (i32, i32)
// CHECK-NOT:   memref.generic_atomic_rmw
// CHECK:     scf.for {{.*}} -> (i32, i32)
// CHECK-NOT:   memref.generic_atomic_rmw
// The scan: rounds while d < N.
// CHECK: scf.while
// CHECK:   arith.cmpi slt, %{{.*}}, %[[N]]
// CHECK:   arith.select %{{.*}}, %[[L0]], %{{.*}} : memref<?x?x?xf32>
// CHECK:   scf.parallel
// Boundary taus: 16 rounds on the host, each one kernel over (boundary,
// chunk of its prefix): the chunk's piece, a release fence and an atomic
// arrival at its group's counter; the last of each group of 16 chunks joins
// the group's pieces (unrolled by 8), arrives at the boundary's counter,
// and the last group joins the groups and steps. Then the boundaries still
// searching finish alone: a bracketed search, a pass over the prefix per
// step.
// CHECK: scf.for %{{.*}} = %{{.*}} to %c16
// CHECK:   scf.parallel
// CHECK:     llvm.fence syncscope("device") release
// CHECK:     memref.atomic_rmw addi %{{.*}} : (i32, memref<?x?x?xi32>) -> i32
// CHECK:     scf.if
// CHECK:       llvm.fence syncscope("device") acquire
// CHECK:       scf.for {{.*}} step %c8{{.*}} -> (index, index, f64, f64)
// CHECK:       llvm.fence syncscope("device") release
// CHECK:       memref.atomic_rmw addi %{{.*}} : (i32, memref<?x?xi32>) -> i32
// CHECK:       scf.if
// CHECK:         llvm.fence syncscope("device") acquire
// CHECK:         scf.for {{.*}} step %c8{{.*}} -> (index, index, f64, f64)
// CHECK: scf.parallel
// CHECK:   scf.while
// The chunk's own candidates, one thread per segment: finite, staying
// UPPER, staying MIDDLE and band counts (i32), the MIDDLE sum.
// CHECK: scf.parallel
// CHECK:   scf.parallel
// CHECK:     scf.for {{.*}} -> (i32, i32, i32, i32, f64)
// Per-query thresholds: the own counts summed over the segments before the
// query's, theta's ranks over the chunk (stopping at rank k), then tau's
// search, which visits the band (its UPPER and MIDDLE scores), then the own
// band candidates segment by segment, counting in i32, each run in loops
// unrolled by 4 (then the rest one by one).
// CHECK: scf.parallel
// CHECK:   scf.parallel
// CHECK:     scf.for {{.*}} -> (index, index, index, index, f64)
// CHECK:     scf.while {{.*}} : (index, index, index, f32, index, i1, i1)
// CHECK:     scf.while
// CHECK:       scf.for {{.*}} step %c4{{.*}} -> (i32, i32, f64, f64)
// CHECK:       scf.for {{.*}} -> (i32, i32, f64, f64)
// CHECK:       scf.for {{.*}} step %c4{{.*}} -> (i32, i32, f64, f64)
// CHECK:       scf.for {{.*}} -> (i32, i32, f64, f64)
// CHECK:       scf.for {{.*}} -> (i32, i32, f64, f64)
// CHECK:         scf.for {{.*}} step %c4{{.*}} -> (i32, i32, f64, f64)
// CHECK:         scf.for {{.*}} -> (i32, i32, f64, f64)
// Per-query rows (nothing more to report).
// CHECK: scf.parallel
// CHECK:   scf.parallel
// CHECK-NOT: memref.generic_atomic_rmw
// CHECK: memref.dealloc %[[L0]]
func.func @select(%u: memref<?x2x?xf32>, %i: memref<?x2x?x8xi32>, %g: memref<?x2x?x8xf32>,
                  %t: memref<?x2x?xf32>) {
  sparsek.select ins(%u : memref<?x2x?xf32>) k = 8 w = 4
      outs(%i, %g, %t : memref<?x2x?x8xi32>, memref<?x2x?x8xf32>, memref<?x2x?xf32>)
  return
}

// -----

// k = 0: no scratch; every score checked (all are window-only), then
// tau = +inf per query.
// CHECK-LABEL: func.func @select_window_only
// CHECK-NOT: memref.alloc
// CHECK: scf.parallel
// CHECK:   memref.generic_atomic_rmw
// CHECK: scf.parallel
// CHECK: memref.store %{{.*}}, %{{.*}} : memref<?x2x?xf32>
func.func @select_window_only(%u: memref<?x2x?xf32>, %i: memref<?x2x?x0xi32>,
                              %g: memref<?x2x?x0xf32>, %t: memref<?x2x?xf32>) {
  sparsek.select ins(%u : memref<?x2x?xf32>) k = 0 w = 4
      outs(%i, %g, %t : memref<?x2x?x0xi32>, memref<?x2x?x0xf32>, memref<?x2x?xf32>)
  return
}
