// The fused select_attention (SPEC 7): the chunked selection's thresholds,
// then one online softmax per query that visits its window and its
// selection, read from the chunk's first list filtered by theta(t) plus the
// chunk's later candidates. No [B, Hkv, T, k] indices or gates exist: the
// only list buffer is [B, Hkv, chunks, min(k, candidates)] (at least 1): a
// budget beyond the keys present allocates nothing for it.
// RUN: sparsek-opt %s -split-input-file -sparsek-lower-to-loops | FileCheck %s
// RUN: sparsek-opt %s -split-input-file "-sparsek-lower-to-loops=parallel-loops select-chunk=23" | FileCheck %s --check-prefix=PAR

// CHECK-LABEL: func.func @fused
// CHECK-NOT: memref<?x2x?x8xi32>
// Window-only scores are still checked for NaN and +inf on the CPU.
// CHECK: memref.get_global @__sparsek_status
// CHECK: %[[CAND:.*]] = arith.maxsi %{{.*}}, %{{.*}} : index
// CHECK: %[[FEW:.*]] = arith.minsi %{{.*}}, %[[CAND]] : index
// CHECK: %[[CAP:.*]] = arith.maxsi %{{.*}}, %[[FEW]] : index
// CHECK: %[[LISTS:.*]] = memref.alloc(%{{.*}}, %{{.*}}, %[[CAP]]) : memref<?x?x?x?xindex>
// CHECK: scf.parallel
// CHECK: scf.while
// The attention: per query, the first list then the chunk's range.
// CHECK: scf.parallel
// CHECK:   scf.parallel
// CHECK:     vector.load %{{.*}} : memref<1x4x?x16xf32>, vector<16xf32>
// CHECK:     memref.load %[[LISTS]]
// CHECK: memref.dealloc %[[LISTS]]
// In the parallel form the window-only scores get a kernel, which reports
// through the device status (first error wins, the winner's code mirrored);
// then the chunked selection, whose per-candidate kernel does the same.
// PAR-LABEL: func.func @fused
// PAR: scf.parallel
// PAR:   scf.parallel
// PAR:     memref.load %{{.*}} : memref<1x2x?xf32>
// PAR:     scf.if
// PAR:       %[[W:.*]] = memref.get_global @__sparsek_status : memref<i32>
// PAR:       %[[M:.*]] = memref.get_global @__sparsek_status_mirror : memref<i32>
// PAR:       %[[OLD:.*]] = memref.generic_atomic_rmw %[[W]][] : memref<i32>
// PAR:         arith.cmpi eq, %{{.*}}, %c0_i32
// PAR:       arith.cmpi eq, %[[OLD]], %c0_i32
// PAR:       memref.store %c1_i32, %[[M]][] : memref<i32>
// PAR: arith.constant 23 : index
// PAR: scf.parallel
// PAR:   scf.parallel
// PAR:     memref.generic_atomic_rmw
// PAR: memref.dealloc
func.func @fused(%q: memref<1x4x?x16xf32>, %k: memref<1x2x?x16xf32>, %v: memref<1x2x?x16xf32>,
                 %u: memref<1x2x?xf32>, %o: memref<1x4x?x16xf32>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<1x4x?x16xf32>, memref<1x2x?x16xf32>,
                               memref<1x2x?x16xf32>, memref<1x2x?xf32>)
      k = 8 w = 4 outs(%o : memref<1x4x?x16xf32>)
  return
}

// -----

// k = 0: sliding-window attention, no selection scratch at all.
// CHECK-LABEL: func.func @window_only
// CHECK-NOT: memref.alloc(
// CHECK: scf.parallel
// CHECK-NOT: memref.alloc(
func.func @window_only(%q: memref<1x2x?x16xf32>, %k: memref<1x2x?x16xf32>, %v: memref<1x2x?x16xf32>,
                       %u: memref<1x2x?xf32>, %o: memref<1x2x?x16xf32>) {
  sparsek.select_attention ins(%q, %k, %v, %u : memref<1x2x?x16xf32>, memref<1x2x?x16xf32>,
                               memref<1x2x?x16xf32>, memref<1x2x?xf32>)
      k = 0 w = 4 outs(%o : memref<1x2x?x16xf32>)
  return
}
