// The GPU target embeds an sm_90 fatbin (ptxas must accept the PTX), links
// libsparsek_runtime.so and exports entry points that take the stream.
// REQUIRES: ptxas
// RUN: sparsek-compile %S/sparsek-compile.mlir -o %t.gpu.so --target=gpu --pipeline-options="query-block=64"
// RUN: llvm-readelf --dynamic %t.gpu.so | FileCheck %s --check-prefix=CHECK-NEEDED
// RUN: llvm-nm -D %t.gpu.so | FileCheck %s --check-prefix=CHECK-SYMS
// RUN: sparsek-compile %S/sparsek-compile.mlir --target=gpu --emit-llvm %t.gpu.ll && FileCheck %s --check-prefix=CHECK-LLVM < %t.gpu.ll

// CHECK-NEEDED: (NEEDED) Shared library: [libsparsek_runtime.so]
// CHECK-SYMS-DAG: T _mlir_ciface_attention_entry
// CHECK-SYMS-DAG: U mgpuLaunchKernel
// CHECK-SYMS-DAG: U mgpuModuleLoad
// CHECK-SYMS-DAG: U sk_rt_set_current_stream
// CHECK-SYMS-DAG: U sk_rt_lend_stream
// CHECK-LLVM-DAG: define {{.*}}i32 @_mlir_ciface_attention_entry(ptr %0,
// CHECK-LLVM-DAG: @attention_kernel_binary = internal constant
