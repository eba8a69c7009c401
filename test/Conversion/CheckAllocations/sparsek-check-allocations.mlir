// Every dynamically sized allocation is guarded: its byte size must fit in
// 63 bits (checked before malloc) and the buffer must not be null unless
// empty (after); otherwise SPARSEK_ERROR_OUT_OF_MEMORY (7) is recorded and
// the rest of the block, which holds every use of the buffer, is skipped.
// RUN: sparsek-opt %s -sparsek-check-allocations -split-input-file | FileCheck %s

// CHECK-LABEL: func.func @scratch(
// CHECK-SAME: %[[N:.*]]: index, %[[OUT:.*]]: memref<?xf32>)
// The byte count as an unsigned 64-bit product with its high half (no
// division): it fits when the high half is 0 and the low one <= INT64_MAX.
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0 : index
// CHECK-DAG: %[[HI0:.*]] = arith.constant 0 : i64
// CHECK-DAG: %[[MAX:.*]] = arith.constant 9223372036854775807 : i64
// CHECK: %[[EMPTY:.*]] = arith.cmpi eq, %[[N]], %[[ZERO]] : index
// CHECK: %[[N64:.*]] = arith.index_castui %[[N]] : index to i64
// CHECK: %[[F:.*]] = arith.select %[[EMPTY]], %{{.*}}, %[[N64]] : i64
// CHECK: %[[LOW:.*]], %[[HIGH:.*]] = arith.mului_extended %{{.*}}, %[[F]] : i64
// CHECK-DAG: arith.cmpi ule, %[[LOW]], %[[MAX]] : i64
// CHECK-DAG: arith.cmpi eq, %[[HIGH]], %[[HI0]] : i64
// CHECK: scf.if %[[FITS:.*]] {
// CHECK-NEXT: %[[BUF:.*]] = memref.alloc(%[[N]]) : memref<?xf32>
// CHECK-NEXT: %[[P:.*]] = memref.extract_aligned_pointer_as_index %[[BUF]]
// CHECK-NEXT: %{{.*}} = arith.constant 0 : index
// CHECK-NEXT: %[[NONNULL:.*]] = arith.cmpi ne, %[[P]], %{{.*}} : index
// CHECK-NEXT: %[[THERE:.*]] = arith.ori %[[NONNULL]], %[[EMPTY]] : i1
// CHECK-NEXT: scf.if %[[THERE]] {
// CHECK-NEXT: arith.constant 1.0
// CHECK-NEXT: linalg.fill {{.*}} outs(%[[BUF]] : memref<?xf32>)
// CHECK-NEXT: memref.copy %[[BUF]], %[[OUT]]
// CHECK-NEXT: memref.dealloc %[[BUF]]
// CHECK-NEXT: } else {
// CHECK: %[[OOM:.*]] = arith.constant 7 : i32
// CHECK: arith.select %{{.*}}, %[[OOM]], %{{.*}} : i32
// CHECK: } else {
// CHECK: arith.constant 7 : i32
// CHECK: return
func.func @scratch(%n: index, %out: memref<?xf32>) {
  %buf = memref.alloc(%n) : memref<?xf32>
  %c = arith.constant 1.0 : f32
  linalg.fill ins(%c : f32) outs(%buf : memref<?xf32>)
  memref.copy %buf, %out : memref<?xf32> to memref<?xf32>
  memref.dealloc %buf : memref<?xf32>
  return
}

// -----

// Static allocations are left alone; so is a buffer the block returns.
// CHECK-LABEL: func.func @unchanged(
// CHECK-NOT: scf.if
// CHECK: memref.alloc() : memref<4xf32>
// CHECK: memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK-NOT: scf.if
// CHECK: return
func.func @unchanged(%n: index) -> memref<?xf32> {
  %a = memref.alloc() : memref<4xf32>
  memref.dealloc %a : memref<4xf32>
  %b = memref.alloc(%n) : memref<?xf32>
  return %b : memref<?xf32>
}

// -----

// Two sizes: the running byte count is checked at each factor (8-byte
// elements: 8 * m, then 8 * m * n).
// CHECK-LABEL: func.func @nested(
// CHECK: arith.constant 8 : i64
// CHECK: arith.mului_extended
// CHECK: arith.mului_extended
// CHECK-NOT: arith.divui
// CHECK: scf.if
// CHECK: memref.alloc(%{{.*}}, %{{.*}}) : memref<?x?xi64>
func.func @nested(%m: index, %n: index) {
  %a = memref.alloc(%m, %n) : memref<?x?xi64>
  memref.dealloc %a : memref<?x?xi64>
  return
}
