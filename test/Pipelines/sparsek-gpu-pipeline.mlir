// The GPU pipeline turns attention into an outlined kernel (one query per
// thread, blocks over batch x query head x query block), NVVM, an embedded
// binary, and host code that checks sizes and launches through mgpu*. On
// sm_90 and later every kernel first waits for the grid before it
// (griddepcontrol.wait) and its module exports the marker global that lets
// the runtime launch it while that grid drains (launch-dependents, the
// default); launch-dependents=false and older chips keep ordinary launches.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa query-block=32" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa query-block=32 launch-dependents=false" | FileCheck %s --check-prefix=ORDINARY
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa query-block=32 chip=sm_80" | FileCheck %s --check-prefix=ORDINARY
// RUN: %mlir-opt-sparsek %s -p 'builtin.module(sparsek-gpu-pipeline{format=isa query-block=32})' | FileCheck %s

// CHECK: llvm.func @attention(
// CHECK: gpu.launch_func {{ *}}@attention_kernel::@attention_kernel blocks in (%{{.*}}, %{{.*}}, %{{.*}}) threads in (%[[C32:.*]], %{{.*}}, %{{.*}}) : i64
// CHECK: llvm.func @_mlir_ciface_attention(
// CHECK: gpu.binary @attention_kernel
// CHECK-SAME: #nvvm.target<O = 3, chip = "sm_90", features = "+ptx81">
// CHECK-SAME: .target sm_90
// 32 threads per block, one query each: the per-query loops must not be
// merged into the block loop (one thread running the whole block).
// CHECK-SAME: .visible .global .align 4 .u32 __sparsek_waits_on_grid = 1;
// CHECK-SAME: .maxntid 32, 1, 1
// CHECK-SAME: griddepcontrol.wait;
// CHECK-NOT: sparsek.
// ORDINARY: gpu.binary @attention_kernel
// ORDINARY-NOT: griddepcontrol
// ORDINARY-NOT: __sparsek_waits_on_grid
func.func @attention(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>,
                     %i: tensor<?x?x?x8xi32>, %g: tensor<?x?x?x8xf32>, %o0: tensor<?x?x?x64xbf16>)
    -> tensor<?x?x?x64xbf16> {
  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>,
                             tensor<?x?x?x64xbf16>, tensor<?x?x?x8xi32>, tensor<?x?x?x8xf32>)
         w = 16 outs(%o0 : tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xbf16>
  return %o : tensor<?x?x?x64xbf16>
}
