// sparsek-gpu-device-status: kernel uses of the host status globals (inside
// a gpu.launch, or as gpu.launch_func operands) become the runtime's device
// word and host-mapped mirror, fetched just before the launch; host uses
// stay; the module gets sparsek_device_status / sparsek_clear_device_status.
// RUN: sparsek-opt %s -split-input-file -sparsek-gpu-device-status -verify-diagnostics | FileCheck %s

// CHECK-LABEL: func.func @launch
// The host check keeps the host word.
// CHECK: %[[HOST:.*]] = memref.get_global @__sparsek_status : memref<i32>
// CHECK: memref.store %{{.*}}, %[[HOST]][] : memref<i32>
// Before the launch: the library key, then the runtime's words.
// CHECK: %[[S:.*]] = memref.get_global @__sparsek_status : memref<i32>
// CHECK: %[[KEY:.*]] = memref.extract_aligned_pointer_as_index %[[S]]
// CHECK: %[[WORD:.*]] = call @sk_rt_device_status_word(%[[KEY]]) : (index) -> memref<i32>
// CHECK: %[[MIRROR:.*]] = call @sk_rt_device_status_mirror(%{{.*}}) : (index) -> memref<i32>
// CHECK: gpu.launch
// CHECK-NOT: memref.get_global
// CHECK: memref.generic_atomic_rmw %[[WORD]][] : memref<i32>
// CHECK: memref.store %{{.*}}, %[[MIRROR]][] : memref<i32>
// CHECK: gpu.terminator
// The mirror global is gone (no host use); the accessors are added.
// CHECK-NOT: @__sparsek_status_mirror
// CHECK-DAG: func.func private @sk_rt_device_status_word(index) -> memref<i32> attributes {llvm.emit_c_interface}
// CHECK-DAG: func.func private @sk_rt_device_status_mirror(index) -> memref<i32> attributes {llvm.emit_c_interface}
// CHECK-DAG: func.func @sparsek_device_status() -> i32
// CHECK-DAG: call @sk_rt_device_status_read(%{{.*}}) : (index) -> i32
// CHECK-DAG: func.func @sparsek_clear_device_status(%{{.*}}: !llvm.ptr)
// CHECK-DAG: call @sk_rt_device_status_clear(%{{.*}}, %{{.*}}) : (index, !llvm.ptr) -> ()
module attributes {gpu.container_module} {
  memref.global "private" @__sparsek_status : memref<i32> = dense<0>
  memref.global "private" @__sparsek_status_mirror : memref<i32> = dense<0>
  func.func @launch(%code: i32) {
    %c1 = arith.constant 1 : index
    %host = memref.get_global @__sparsek_status : memref<i32>
    memref.store %code, %host[] : memref<i32>
    gpu.launch blocks(%bx, %by, %bz) in (%x = %c1, %y = %c1, %z = %c1)
               threads(%tx, %ty, %tz) in (%u = %c1, %v = %c1, %w = %c1) {
      %word = memref.get_global @__sparsek_status : memref<i32>
      %mirror = memref.get_global @__sparsek_status_mirror : memref<i32>
      %old = memref.generic_atomic_rmw %word[] : memref<i32> {
      ^bb0(%cur: i32):
        memref.atomic_yield %code : i32
      }
      memref.store %code, %mirror[] : memref<i32>
      gpu.terminator
    }
    return
  }
}

// -----

// A hand-built kernel (gpu.func) takes the words as launch operands: those
// operands become the runtime's words; a value defined on the host and
// captured by a gpu.launch is replaced there too, one fetch per launch.
// CHECK-LABEL: func.func @operands
// CHECK: %[[W1:.*]] = call @sk_rt_device_status_word
// CHECK: %[[M1:.*]] = call @sk_rt_device_status_mirror
// CHECK: gpu.launch_func @k::@k blocks in ({{.*}}) threads in ({{.*}}) args(%[[W1]] : memref<i32>, %[[M1]] : memref<i32>)
// CHECK: %[[W2:.*]] = call @sk_rt_device_status_word
// CHECK: gpu.launch
// CHECK: memref.generic_atomic_rmw %[[W2]][]
// CHECK: memref.generic_atomic_rmw %[[W2]][]
module attributes {gpu.container_module} {
  memref.global "private" @__sparsek_status : memref<i32> = dense<0>
  memref.global "private" @__sparsek_status_mirror : memref<i32> = dense<0>
  gpu.module @k {
    gpu.func @k(%w: memref<i32>, %m: memref<i32>) kernel {
      gpu.return
    }
  }
  func.func @operands(%code: i32) {
    %c1 = arith.constant 1 : index
    %word = memref.get_global @__sparsek_status : memref<i32>
    %mirror = memref.get_global @__sparsek_status_mirror : memref<i32>
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
        args(%word : memref<i32>, %mirror : memref<i32>)
    gpu.launch blocks(%bx, %by, %bz) in (%x = %c1, %y = %c1, %z = %c1)
               threads(%tx, %ty, %tz) in (%u = %c1, %v = %c1, %w = %c1) {
      %a = memref.generic_atomic_rmw %word[] : memref<i32> {
      ^bb0(%cur: i32):
        memref.atomic_yield %code : i32
      }
      %b = memref.generic_atomic_rmw %word[] : memref<i32> {
      ^bb0(%cur: i32):
        memref.atomic_yield %code : i32
      }
      gpu.terminator
    }
    return
  }
}

// -----

// Kernels already outlined that read the host globals themselves cannot be
// given the runtime's words: an error, not a miscompile.
module attributes {gpu.container_module} {
  gpu.module @k {
    memref.global "private" @__sparsek_status : memref<i32> = dense<0>
    gpu.func @k() kernel {
      // expected-error @below {{kernel code reads the host status word directly}}
      %w = memref.get_global @__sparsek_status : memref<i32>
      gpu.return
    }
  }
}

// -----

// A status word of another type is refused, not rewritten.
module attributes {gpu.container_module} {
  memref.global "private" @__sparsek_status : memref<2xi32> = dense<0>
  func.func @wrong_type() {
    %c1 = arith.constant 1 : index
    // expected-error @below {{a status word must be a 'memref<i32>', got 'memref<2xi32>'}}
    %w = memref.get_global @__sparsek_status : memref<2xi32>
    gpu.launch blocks(%bx, %by, %bz) in (%x = %c1, %y = %c1, %z = %c1)
               threads(%tx, %ty, %tz) in (%u = %c1, %v = %c1, %t = %c1) {
      %c0 = arith.constant 0 : index
      %v0 = memref.load %w[%c0] : memref<2xi32>
      gpu.terminator
    }
    return
  }
}
