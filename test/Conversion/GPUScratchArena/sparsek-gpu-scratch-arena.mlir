// sparsek-gpu-scratch-arena: a block's device buffers (gpu.alloc with one
// gpu.dealloc in the same block) become views of one allocation at
// 256-byte-aligned offsets, made where the first of them was (pure size
// computations move up to it) and freed where the last was; the rest of
// the block runs only if the summed size fits in int64 and the allocation
// is not null, otherwise the status word records out of memory (7).
// RUN: sparsek-opt %s -split-input-file -sparsek-gpu-scratch-arena | FileCheck %s

// CHECK-LABEL: func.func @two
// CHECK-SAME: (%[[N:.*]]: index, %[[M:.*]]: index)
// The second size, computed after the first buffer, moved up.
// CHECK: %[[M2:.*]] = arith.muli %[[M]], %{{.*}} : index
// CHECK: scf.if %[[FITS:.*]] {
// CHECK:   %[[S:.*]] = gpu.wait async
// CHECK:   %[[A:.*]], %[[T:.*]] = gpu.alloc async [%[[S]]] (%[[BYTES:.*]]) : memref<?xi8>
// CHECK:   gpu.wait [%[[T]]]
// CHECK:   %[[P:.*]] = memref.extract_aligned_pointer_as_index %[[A]]
// CHECK:   scf.if %{{.*}} {
// CHECK:     %[[V0:.*]] = memref.view %[[A]][%[[O0:.*]]][%[[N]]] : memref<?xi8> to memref<?x4xf32>
// CHECK:     %[[V1:.*]] = memref.view %[[A]][%[[O1:.*]]][%[[M2]]] : memref<?xi8> to memref<?xi64>
// CHECK:     gpu.launch_func @k::@k {{.*}} args(%[[V0]] : memref<?x4xf32>, %[[V1]] : memref<?xi64>)
// CHECK-NOT: gpu.dealloc
// CHECK:     gpu.launch_func @k::@k {{.*}} args(%[[V0]] : memref<?x4xf32>, %[[V1]] : memref<?xi64>)
// CHECK:     %[[S2:.*]] = gpu.wait async
// CHECK:     %[[T2:.*]] = gpu.dealloc async [%[[S2]]] %[[A]] : memref<?xi8>
// CHECK:     gpu.wait [%[[T2]]]
// CHECK:   } else {
// CHECK:     memref.get_global @__sparsek_status
// CHECK:     arith.constant 7 : i32
// CHECK:   }
// CHECK: } else {
// CHECK:   arith.constant 7 : i32
// CHECK: }
// CHECK-NOT: gpu.alloc
// CHECK-NOT: gpu.dealloc
module attributes {gpu.container_module} {
  gpu.module @k {
    gpu.func @k(%a: memref<?x4xf32>, %b: memref<?xi64>) kernel {
      gpu.return
    }
  }
  func.func @two(%n: index, %m: index) {
    %c1 = arith.constant 1 : index
    %c3 = arith.constant 3 : index
    %0 = gpu.wait async
    %a, %1 = gpu.alloc async [%0] (%n) : memref<?x4xf32>
    gpu.wait [%1]
    %m2 = arith.muli %m, %c3 : index
    %2 = gpu.wait async
    %b, %3 = gpu.alloc async [%2] (%m2) : memref<?xi64>
    gpu.wait [%3]
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
        args(%a : memref<?x4xf32>, %b : memref<?xi64>)
    %4 = gpu.wait async
    %5 = gpu.dealloc async [%4] %a : memref<?x4xf32>
    gpu.wait [%5]
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
        args(%a : memref<?x4xf32>, %b : memref<?xi64>)
    %6 = gpu.wait async
    %7 = gpu.dealloc async [%6] %b : memref<?xi64>
    gpu.wait [%7]
    return
  }
}

// -----

// The sizes: 4 x 4 bytes per row of the first buffer, 8 per element of
// the second, each checked against int64 and rounded up to 256.
// CHECK-LABEL: func.func @offsets
// CHECK: %[[C16:.*]] = arith.constant 16 : i64
// CHECK: arith.mului_extended %[[C16]]
// CHECK: %[[C255:.*]] = arith.constant 255 : index
// CHECK: arith.addi %{{.*}}, %[[C255]]
// CHECK: %[[MASK:.*]] = arith.constant -256 : index
// CHECK: %[[A0:.*]] = arith.andi %{{.*}}, %[[MASK]]
// CHECK: %[[O1:.*]] = arith.addi %{{.*}}, %[[A0]]
// CHECK: %[[C8:.*]] = arith.constant 8 : i64
// CHECK: arith.mului_extended %[[C8]]
// CHECK: %[[A1:.*]] = arith.andi %{{.*}}, %{{.*}} : index
// CHECK: %[[TOTAL:.*]] = arith.addi %[[O1]], %[[A1]]
// CHECK: gpu.alloc async [%{{.*}}] (%[[TOTAL]]) : memref<?xi8>
// CHECK: memref.view %{{.*}}[%{{.*}}][%{{.*}}] : memref<?xi8> to memref<?x4xf32>
// CHECK: memref.view %{{.*}}[%[[O1]]][%{{.*}}] : memref<?xi8> to memref<?xi64>
module attributes {gpu.container_module} {
  gpu.module @k {
    gpu.func @k(%a: memref<?x4xf32>, %b: memref<?xi64>) kernel {
      gpu.return
    }
  }
  func.func @offsets(%n: index) {
    %c1 = arith.constant 1 : index
    %0 = gpu.wait async
    %a, %1 = gpu.alloc async [%0] (%n) : memref<?x4xf32>
    gpu.wait [%1]
    %2 = gpu.wait async
    %b, %3 = gpu.alloc async [%2] (%n) : memref<?xi64>
    gpu.wait [%3]
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
        args(%a : memref<?x4xf32>, %b : memref<?xi64>)
    %4 = gpu.wait async
    %5 = gpu.dealloc async [%4] %a : memref<?x4xf32>
    gpu.wait [%5]
    %6 = gpu.wait async
    %7 = gpu.dealloc async [%6] %b : memref<?xi64>
    gpu.wait [%7]
    return
  }
}

// -----

// Left alone: a size read from memory after the first buffer (not pure),
// a buffer freed in another block, a host-shared one, and a block with a
// single candidate.
// CHECK-LABEL: func.func @kept
// CHECK: gpu.alloc async [%{{.*}}] (%{{.*}}) : memref<?xf32>
// CHECK: memref.load
// CHECK: gpu.alloc async [%{{.*}}] (%{{.*}}) : memref<?xf32>
// CHECK: gpu.alloc async [%{{.*}}] (%{{.*}}) : memref<?xf32>
// CHECK: gpu.alloc async [%{{.*}}] host_shared (%{{.*}}) : memref<?xf32>
// CHECK-NOT: memref<?xi8>
module attributes {gpu.container_module} {
  gpu.module @k {
    gpu.func @k(%a: memref<?xf32>) kernel {
      gpu.return
    }
  }
  func.func @kept(%n: index, %sizes: memref<1xindex>, %p: i1) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %0 = gpu.wait async
    %a, %1 = gpu.alloc async [%0] (%n) : memref<?xf32>
    gpu.wait [%1]
    %m = memref.load %sizes[%c0] : memref<1xindex>
    %2 = gpu.wait async
    %b, %3 = gpu.alloc async [%2] (%m) : memref<?xf32>
    gpu.wait [%3]
    %4 = gpu.wait async
    %c, %5 = gpu.alloc async [%4] (%n) : memref<?xf32>
    gpu.wait [%5]
    %6 = gpu.wait async
    %d, %7 = gpu.alloc async [%6] host_shared (%n) : memref<?xf32>
    gpu.wait [%7]
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
        args(%a : memref<?xf32>)
    scf.if %p {
      %8 = gpu.wait async
      %9 = gpu.dealloc async [%8] %c : memref<?xf32>
      gpu.wait [%9]
    }
    %10 = gpu.wait async
    %11 = gpu.dealloc async [%10] %a : memref<?xf32>
    gpu.wait [%11]
    %12 = gpu.wait async
    %13 = gpu.dealloc async [%12] %b : memref<?xf32>
    gpu.wait [%13]
    %14 = gpu.wait async
    %15 = gpu.dealloc async [%14] %d : memref<?xf32>
    gpu.wait [%15]
    return
  }
}
