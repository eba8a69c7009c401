// The whole example layer (linalg projections, score, the composite
// select_attention, output projection) through the GPU pipeline to an sm_90
// fatbin: every op runs in a kernel, and the buffers between them (the
// projections, select's indices, gates and tau, its heaps) are device
// allocations, never host malloc.
// REQUIRES: ptxas
// RUN: sparsek-opt %sparsek_src_root/examples/sparsek_layer.mlir --sparsek-gpu-pipeline | FileCheck %s

// CHECK-NOT: llvm.call @malloc
// CHECK-LABEL: llvm.func @sparsek_layer(
// CHECK-NOT: llvm.call @malloc
// CHECK-NOT: llvm.call @free
// CHECK: llvm.call @mgpuMemAlloc
// CHECK: gpu.launch_func
// CHECK: llvm.call @mgpuMemFree
// CHECK-NOT: llvm.call @malloc
// CHECK: gpu.binary @sparsek_layer_kernel
// CHECK-SAME: chip = "sm_90"
// CHECK: llvm.func @sparsek_layer_entry(
// CHECK-NOT: sparsek.

// The layer's plain tensor code (projections) runs 128 threads per block
// (sparsek-gpu-thread-tiles), not one. Only the selection's per-boundary
// kernel that finishes a search alone runs one thread per block on purpose:
// each runs its own number of passes over its prefix, so sharing a warp
// would serialize them.
// RUN: sparsek-opt %sparsek_src_root/examples/sparsek_layer.mlir --sparsek-gpu-pipeline="format=isa" | FileCheck %s --check-prefix=THREADS
// THREADS: gpu.binary @sparsek_layer_kernel
// THREADS-SAME: .maxntid 128, 1, 1
// RUN: sparsek-opt %sparsek_src_root/examples/sparsek_layer.mlir --sparsek-gpu-pipeline="format=isa" | grep -o "maxntid 1, 1, 1" | count 1
