// sparsek-compile: a module to a shared library whose public functions have
// C entry points returning a status; GPU libraries embed the kernels and
// link the runtime.
// RUN: sparsek-compile %s -o %t.cpu.so
// RUN: llvm-nm -D --defined-only %t.cpu.so | FileCheck %s --check-prefix=CHECK-CPU
// RUN: sparsek-compile %s --emit-llvm %t.ll && FileCheck %s --check-prefix=CHECK-LLVM < %t.ll
// RUN: not sparsek-compile %s -o %t.so --target=tpu 2>&1 | FileCheck %s --check-prefix=CHECK-TARGET
// RUN: not sparsek-compile %s -o %t.so --pipeline-options=index-bitwidth=7 2>&1 | FileCheck %s --check-prefix=CHECK-OPTS

// CHECK-CPU-DAG: T _mlir_ciface_attention_entry
// CHECK-CPU-DAG: T _mlir_ciface_attention
// CHECK-CPU-DAG: T sparsek_status
// CHECK-LLVM: define {{.*}}i32 @_mlir_ciface_attention_entry(
// CHECK-TARGET: --target must be cpu or gpu, not 'tpu'
// CHECK-OPTS: sparsek-cpu-pipeline: option index-bitwidth must be one of 32, 64, got 7
func.func @attention(%q: tensor<?x?x?x32xf16>, %k: tensor<?x?x?x32xf16>, %v: tensor<?x?x?x32xf16>,
                     %i: tensor<?x?x?x?xi32>, %g: tensor<?x?x?x?xf32>, %o0: tensor<?x?x?x32xf16>)
    -> tensor<?x?x?x32xf16> {
  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<?x?x?x32xf16>, tensor<?x?x?x32xf16>,
                             tensor<?x?x?x32xf16>, tensor<?x?x?x?xi32>, tensor<?x?x?x?xf32>)
         w = 8 outs(%o0 : tensor<?x?x?x32xf16>) -> tensor<?x?x?x32xf16>
  return %o : tensor<?x?x?x32xf16>
}
