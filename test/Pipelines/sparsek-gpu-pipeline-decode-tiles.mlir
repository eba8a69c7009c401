// decode-kernel=tiles: decode_attention becomes the split-K tile kernel,
// whose PTX holds L2 bulk prefetches of the rows ahead, 16-byte coalesced
// K/V copies into the cp.async ring (cp.async.cg, 4-byte scores by
// cp.async.ca, commit / wait_group) read back with ld.shared.v4, the dot
// products' butterfly shuffles, ex2 (ftz) for the online softmax, and the
// split merge (a device-global counter, membar.gl around atom.global.add);
// 128 threads. decode-kernel=tiles-mma: the same launch on mma.sync (24 per
// iteration at D = 128: 16 for Q K^T, 8 for V^T P^T) with the rescale
// factors from other lanes (shfl.idx). f32 keeps the loop kernels.
// decode-kernel=tiles is the default; decode-kernel=loops emits no tile
// kernel. The CPU pipeline runs the same walks as loops.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa decode-kernel=tiles" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa decode-kernel=tiles-mma" | FileCheck %s --check-prefix=MMA
// RUN: %if ptxas %{ sparsek-opt %s --sparsek-gpu-pipeline="decode-kernel=tiles-mma" -o /dev/null %}
// RUN: sparsek-opt %s --sparsek-cpu-pipeline=decode-kernel=tiles-mma | FileCheck %s --check-prefix=CPU
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa decode-kernel=loops" | FileCheck %s --check-prefix=LOOPS
// RUN: %if ptxas %{ sparsek-opt %s --sparsek-gpu-pipeline="decode-kernel=tiles" -o /dev/null %}
// RUN: sparsek-opt %s --sparsek-cpu-pipeline=decode-kernel=tiles | FileCheck %s --check-prefix=CPU
// RUN: not sparsek-opt %s --sparsek-gpu-pipeline=decode-kernel=mma-sync 2>&1 | FileCheck %s --check-prefix=BAD
// BAD: Cannot find option named 'mma-sync'!

// CHECK: llvm.func @bf16_decode(
// CHECK: gpu.launch_func {{ *}}@sparsek_decode_tiles_0::@decode_g4 blocks in (%{{.*}}, %{{.*}}, %{{.*}}) threads in (%{{.*}}, %{{.*}}, %{{.*}}) : i64
// CHECK: llvm.func @f32_decode(
// CHECK-NOT: @sparsek_decode_tiles_
// CHECK: gpu.binary @sparsek_decode_tiles_0
// CHECK-SAME: .global .align 4 .b8 split_counters[8448];
// CHECK-SAME: .entry decode_g4(
// CHECK-SAME: .maxntid 128, 1, 1
// CHECK-SAME: cp.async.cg.shared.global
// CHECK-SAME: cp.async.commit_group
// CHECK-SAME: cp.async.bulk.prefetch.L2.global
// CHECK-SAME: cp.async.wait_group {{[^;]*}}1;
// CHECK-SAME: ld.shared.v4.b32
// CHECK-SAME: shfl.sync.bfly.b32 {{[^,]*}}, {{[^,]*}}, 8, 31, -1;
// CHECK-SAME: ex2.approx.ftz.f32
// CHECK-SAME: bar.sync
// CHECK-SAME: membar.gl;
// CHECK-SAME: atom.global.add.u32
// CHECK-SAME: membar.gl;
// MMA: gpu.launch_func {{ *}}@sparsek_decode_tiles_0::@decode_mma_g4 blocks in
// MMA: gpu.binary @sparsek_decode_tiles_0
// MMA-SAME: .entry decode_mma_g4(
// MMA-SAME: ld.global.v4.b32
// MMA-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// MMA-SAME: shfl.sync.idx.b32
// MMA-SAME: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// MMA-SAME: atom.global.add.u32
// LOOPS-NOT: sparsek_decode_tiles
// CPU: llvm.mlir.global private @sparsek_decode_split_counters(dense<0> : tensor<2112xi32>)
// CPU: llvm.func @bf16_decode(
// CPU: llvm.atomicrmw add
// CPU-NOT: gpu.
func.func @bf16_decode(%q: tensor<?x32x128xbf16>, %kc: tensor<?x8x320x128xbf16>, %vc: tensor<?x8x320x128xbf16>,
                       %sc: tensor<?x8x320xf32>, %tau: tensor<?x8xf32>, %cnt: tensor<?x8xi32>,
                       %pos: tensor<?xi64>, %o: tensor<?x32x128xbf16>) -> tensor<?x32x128xbf16> {
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x32x128xbf16>,
      tensor<?x8x320x128xbf16>, tensor<?x8x320x128xbf16>, tensor<?x8x320xf32>, tensor<?x8xf32>,
      tensor<?x8xi32>, tensor<?xi64>) k = 256 w = 64 outs(%o : tensor<?x32x128xbf16>) -> tensor<?x32x128xbf16>
  return %r : tensor<?x32x128xbf16>
}

func.func @f32_decode(%q: tensor<?x4x64xf32>, %kc: tensor<?x2x12x64xf32>, %vc: tensor<?x2x12x64xf32>,
                      %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>,
                      %pos: tensor<?xi64>, %o: tensor<?x4x64xf32>) -> tensor<?x4x64xf32> {
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x64xf32>,
      tensor<?x2x12x64xf32>, tensor<?x2x12x64xf32>, tensor<?x2x12xf32>, tensor<?x2xf32>,
      tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x64xf32>) -> tensor<?x4x64xf32>
  return %r : tensor<?x4x64xf32>
}
