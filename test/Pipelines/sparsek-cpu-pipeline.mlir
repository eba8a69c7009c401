// The CPU pipeline takes a tensor-level SparseK layer to the LLVM dialect:
// no sparsek, tensor, linalg or scf op is left; the entry point takes its
// destination instead of returning it and gets a C wrapper, plus a
// `layer_entry` that returns the status; the status word and its
// accessors are there.
// RUN: sparsek-opt %s --sparsek-cpu-pipeline | FileCheck %s
// RUN: sparsek-opt %s --sparsek-cpu-pipeline=c-wrappers=false | FileCheck %s --check-prefix=NOWRAP
// RUN: not sparsek-opt %s --sparsek-cpu-pipeline=index-bitwidth=16 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: %mlir-opt-sparsek %s -p 'builtin.module(sparsek-cpu-pipeline)' | FileCheck %s
// The GPU's tile walk as loops (prefill-kernel=tiles) compiles just as far.
// RUN: sparsek-opt %s --sparsek-cpu-pipeline=prefill-kernel=tiles | FileCheck %s
// The GPU's kernels (mma-sync, auto) are no CPU values.
// RUN: not sparsek-opt %s --sparsek-cpu-pipeline=prefill-kernel=mma-sync 2>&1 | FileCheck %s --check-prefix=BADKERNEL
// RUN: not sparsek-opt %s --sparsek-cpu-pipeline=prefill-kernel=auto 2>&1 | FileCheck %s --check-prefix=BADAUTO
// BADKERNEL: Cannot find option named 'mma-sync'!
// BADAUTO: Cannot find option named 'auto'!

// CHECK: llvm.mlir.global private @__sparsek_status(0 : i32)
// CHECK-DAG: llvm.func @sparsek_status() -> i32
// CHECK-DAG: llvm.func @sparsek_clear_status()
// CHECK-DAG: llvm.func @layer(%{{.*}}) attributes {llvm.emit_c_interface}
// CHECK-DAG: llvm.func @_mlir_ciface_layer(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr)
// CHECK-DAG: llvm.func @_mlir_ciface_layer_entry(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr) -> i32
// CHECK-NOT: sparsek.
// CHECK-NOT: linalg.
// CHECK-NOT: scf.
// NOWRAP-NOT: @_mlir_ciface_layer(
// NOWRAP: llvm.func @_mlir_ciface_layer_entry(
// BAD: option index-bitwidth must be one of 32, 64, got 16
func.func @layer(%q: tensor<1x4x?x8xbf16>, %k: tensor<1x2x?x8xbf16>,
                 %v: tensor<1x2x?x8xbf16>, %u: tensor<1x2x?xf32>,
                 %o0: tensor<1x4x?x8xbf16>) -> tensor<1x4x?x8xbf16> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<1x4x?x8xbf16>, tensor<1x2x?x8xbf16>,
                                    tensor<1x2x?x8xbf16>, tensor<1x2x?xf32>)
         k = 8 w = 4 outs(%o0 : tensor<1x4x?x8xbf16>) -> tensor<1x4x?x8xbf16>
  return %o : tensor<1x4x?x8xbf16>
}
