// RUN: sparsek-opt %s -split-input-file -sparsek-gpu-name-kernels | FileCheck %s

// Two outlined launches of @f: both kernels were named @f_kernel; each takes
// its module's name, and its launch follows. @g's kernel, alone with its
// name, keeps it.
// CHECK-LABEL: func.func @f
// CHECK: gpu.launch_func @f_kernel::@f_kernel
// CHECK: gpu.launch_func @f_kernel_0::@f_kernel_0
// CHECK-LABEL: func.func @g
// CHECK: gpu.launch_func @g_kernel::@g_kernel
// CHECK: gpu.module @f_kernel
// CHECK: gpu.func @f_kernel() kernel
// CHECK: gpu.module @f_kernel_0
// CHECK: gpu.func @f_kernel_0() kernel
// CHECK: gpu.module @g_kernel
// CHECK: gpu.func @g_kernel() kernel
module attributes {gpu.container_module} {
  func.func @f() {
    %c1 = arith.constant 1 : index
    gpu.launch_func @f_kernel::@f_kernel blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    gpu.launch_func @f_kernel_0::@f_kernel blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    return
  }
  func.func @g() {
    %c1 = arith.constant 1 : index
    gpu.launch_func @g_kernel::@g_kernel blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    return
  }
  gpu.module @f_kernel {
    gpu.func @f_kernel() kernel {
      gpu.return
    }
  }
  gpu.module @f_kernel_0 {
    gpu.func @f_kernel() kernel {
      gpu.return
    }
  }
  gpu.module @g_kernel {
    gpu.func @g_kernel() kernel {
      gpu.return
    }
  }
}

// -----

// Kernels the compiler named itself keep their names, shared or not: their
// modules' names do not extend them.
// CHECK-LABEL: func.func @h
// CHECK: gpu.launch_func @sparsek_tiles_0::@tiles
// CHECK: gpu.launch_func @sparsek_tiles_1::@tiles
// CHECK: gpu.module @sparsek_tiles_0
// CHECK: gpu.func @tiles() kernel
// CHECK: gpu.module @sparsek_tiles_1
// CHECK: gpu.func @tiles() kernel
module attributes {gpu.container_module} {
  func.func @h() {
    %c1 = arith.constant 1 : index
    gpu.launch_func @sparsek_tiles_0::@tiles blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    gpu.launch_func @sparsek_tiles_1::@tiles blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    return
  }
  gpu.module @sparsek_tiles_0 {
    gpu.func @tiles() kernel {
      gpu.return
    }
  }
  gpu.module @sparsek_tiles_1 {
    gpu.func @tiles() kernel {
      gpu.return
    }
  }
}
