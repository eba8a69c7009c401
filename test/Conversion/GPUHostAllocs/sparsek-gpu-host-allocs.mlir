// sparsek-gpu-host-allocs: host buffers that kernels use become gpu.alloc
// (their deallocations gpu.dealloc), host copies between device buffers
// gpu.memcpy, each on the current stream and waited for; buffers only the
// host uses and allocations inside kernels stay.
// RUN: sparsek-opt %s -split-input-file -sparsek-gpu-host-allocs -verify-diagnostics | FileCheck %s

// CHECK-LABEL: func.func @launch
// CHECK-SAME: (%[[N:.*]]: index, %[[ARG:.*]]: memref<?xf32>)
// CHECK: %[[T0:.*]] = gpu.wait async
// CHECK: %[[M:.*]], %[[T1:.*]] = gpu.alloc async [%[[T0]]] (%[[N]]) : memref<?xf32>
// CHECK: gpu.wait [%[[T1]]]
// CHECK: %[[V:.*]] = memref.subview %[[M]]
// CHECK: gpu.launch_func @k::@k {{.*}} args(%[[V]] : memref<?xf32, strided<[1], offset: ?>>)
// CHECK: %[[T2:.*]] = gpu.wait async
// CHECK: %[[T3:.*]] = gpu.memcpy async [%[[T2]]] %[[ARG]], %[[M]] : memref<?xf32>, memref<?xf32>
// CHECK: gpu.wait [%[[T3]]]
// CHECK: %[[T4:.*]] = gpu.wait async
// CHECK: %[[T5:.*]] = gpu.dealloc async [%[[T4]]] %[[M]] : memref<?xf32>
// CHECK: gpu.wait [%[[T5]]]
// CHECK-NOT: memref.alloc
// CHECK-NOT: memref.copy
// CHECK-NOT: memref.dealloc
module attributes {gpu.container_module} {
  gpu.module @k {
    gpu.func @k(%m: memref<?xf32, strided<[1], offset: ?>>) kernel {
      gpu.return
    }
  }
  func.func @launch(%n: index, %arg: memref<?xf32>) {
    %c1 = arith.constant 1 : index
    %c0 = arith.constant 0 : index
    %m = memref.alloc(%n) : memref<?xf32>
    %v = memref.subview %m[%c0] [%n] [1] : memref<?xf32> to memref<?xf32, strided<[1], offset: ?>>
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
        args(%v : memref<?xf32, strided<[1], offset: ?>>)
    memref.copy %m, %arg : memref<?xf32> to memref<?xf32>
    memref.dealloc %m : memref<?xf32>
    return
  }
}

// -----

// Uses inside a gpu.launch body count as kernel uses; the body's own
// allocations and a buffer only host code touches stay memref.alloc.
// CHECK-LABEL: func.func @inline_launch
// CHECK: %[[M:.*]], %{{.*}} = gpu.alloc async
// CHECK: %[[H:.*]] = memref.alloc() : memref<4xf32>
// CHECK: memref.store %{{.*}}, %[[H]]
// CHECK: gpu.launch
// CHECK:   memref.alloc() : memref<2xf32>
// CHECK:   memref.store %{{.*}}, %[[M]]
// CHECK: memref.dealloc %[[H]]
func.func @inline_launch(%x: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %m = memref.alloc() : memref<4xf32>
  %h = memref.alloc() : memref<4xf32>
  memref.store %x, %h[%c0] : memref<4xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    %s = memref.alloc() : memref<2xf32>
    memref.store %x, %m[%c0] : memref<4xf32>
    memref.dealloc %s : memref<2xf32>
    gpu.terminator
  }
  memref.dealloc %h : memref<4xf32>
  return
}

// -----

// Host code cannot read device memory: a buffer used both ways is an error.
func.func @host_reads(%x: f32) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  // expected-error@+1 {{a buffer that GPU kernels use is also accessed by host code}}
  %m = memref.alloc() : memref<4xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %x, %m[%c0] : memref<4xf32>
    gpu.terminator
  }
  // expected-note@+1 {{host access here}}
  %v = memref.load %m[%c0] : memref<4xf32>
  return %v : f32
}
