// The GPU target embeds an sm_90 fatbin (ptxas must accept the PTX), links
// libsparsek_runtime.so and exports entry points that take the stream.
// REQUIRES: ptxas
// RUN: sparsek-compile %S/sparsek-compile.mlir -o %t.gpu.so --target=gpu --pipeline-options="query-block=64"
// RUN: llvm-readelf --dynamic %t.gpu.so | FileCheck %s --check-prefix=NEEDED
// RUN: llvm-nm -D %t.gpu.so | FileCheck %s --check-prefix=SYMS
// RUN: sparsek-compile %S/sparsek-compile.mlir --target=gpu --emit-llvm %t.gpu.ll && FileCheck %s --check-prefix=LLVM < %t.gpu.ll

// NEEDED: (NEEDED) Shared library: [libsparsek_runtime.so]
// SYMS-DAG: T _mlir_ciface_attention_entry
// SYMS-DAG: U mgpuLaunchKernel
// SYMS-DAG: U mgpuModuleLoad
// SYMS-DAG: U sk_rt_set_current_stream
// LLVM-DAG: define {{.*}}i32 @_mlir_ciface_attention_entry(ptr %0,
// LLVM-DAG: @attention_kernel_binary = internal constant
