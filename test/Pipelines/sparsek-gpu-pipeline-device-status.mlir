// Kernels of the GPU pipeline report invalid data through the device status:
// host code fetches the runtime's words of this library before the launch
// (by the address of its host status word) and passes them to the kernel,
// which sets the word by compare-and-swap and mirrors the winner's code;
// the library exports the accessors. The valid path reads neither word.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa" | FileCheck %s
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa" | FileCheck %s --check-prefix=PTX

// PTX: gpu.binary @decode_kernel
// PTX-SAME: atom.{{[a-z_.]*}}cas.b32

// CHECK-LABEL: llvm.func @decode(
// CHECK: llvm.call @sk_rt_device_status_word(
// CHECK: llvm.call @sk_rt_device_status_mirror(
// CHECK: gpu.launch_func {{ *}}@decode_kernel::@decode_kernel
// CHECK-DAG: llvm.call @_mlir_ciface_sk_rt_device_status_word(
// CHECK-DAG: llvm.call @_mlir_ciface_sk_rt_device_status_mirror(
// CHECK-DAG: llvm.func @sparsek_device_status() -> i32
// CHECK-DAG: llvm.call @sk_rt_device_status_read(
// CHECK-DAG: llvm.func @sparsek_clear_device_status(%{{.*}}: !llvm.ptr)
// CHECK-DAG: llvm.call @sk_rt_device_status_clear(
// CHECK-NOT: __sparsek_status_mirror
func.func @decode(%q: tensor<?x4x16xf32>, %kc: tensor<?x2x12x16xf32>, %vc: tensor<?x2x12x16xf32>,
                  %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>,
                  %pos: tensor<?xi64>, %o0: tensor<?x4x16xf32>) -> tensor<?x4x16xf32> {
  %o = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf32>,
      tensor<?x2x12x16xf32>, tensor<?x2x12x16xf32>, tensor<?x2x12xf32>, tensor<?x2xf32>,
      tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o0 : tensor<?x4x16xf32>) -> tensor<?x4x16xf32>
  return %o : tensor<?x4x16xf32>
}
