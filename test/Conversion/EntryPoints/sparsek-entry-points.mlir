// Every public destination-passing function gets `<name>_entry` returning
// the status. The entry point takes every buffer with dynamic sizes and
// compares each passed size with the function type (static sizes equal,
// dynamic ones not negative) before calling; a mismatch records
// SPARSEK_ERROR_SHAPE_MISMATCH (2) and calls nothing. The module exports
// sparsek_manifest(): the JSON signature of every entry point. With
// gpu=true the entry point takes the stream first, runs the call on it and
// folds a runtime (CUDA) failure into SPARSEK_ERROR_RUNTIME (5).
// RUN: sparsek-opt %s -sparsek-entry-points | FileCheck %s
// RUN: sparsek-opt %s "-sparsek-entry-points=gpu=true" | FileCheck %s --check-prefix=GPU
// RUN: sparsek-opt %s -sparsek-entry-points | FileCheck %s --check-prefix=MANIFEST

// CHECK-LABEL: func.func @layer(
// CHECK-LABEL: func.func @layer_entry(
// CHECK-SAME: %[[A:.*]]: memref<?xf32>) -> i32 attributes {llvm.emit_c_interface}
// CHECK: call @sparsek_clear_status() : () -> ()
// CHECK: %{{.*}}, %{{.*}}, %[[N:.*]], %{{.*}} = memref.extract_strided_metadata %[[A]] : memref<?xf32>
// CHECK: %[[OK:.*]] = arith.cmpi sge, %[[N]], %{{.*}} : index
// CHECK: scf.if %[[OK]] {
// CHECK-NEXT: func.call @layer(%[[A]]) : (memref<?xf32>) -> ()
// CHECK-NEXT: } else {
// CHECK: %[[MISMATCH:.*]] = arith.constant 2 : i32
// CHECK: arith.select %{{.*}}, %[[MISMATCH]], %{{.*}} : i32
// CHECK: memref.store
// CHECK: }
// CHECK: %[[S:.*]] = call @sparsek_status() : () -> i32
// CHECK: return %[[S]] : i32

// Static sizes (select's k = 4 here) are compared too: the entry point
// takes them dynamic and casts back after the check.
// CHECK-LABEL: func.func @select_like_entry(
// CHECK-SAME: %[[U:.*]]: memref<?x?xf32>, %[[I:.*]]: memref<?x?xi32>, %[[T:.*]]: index) -> i32
// CHECK: %{{.*}}, %{{.*}}, %[[US:.*]]:2, %{{.*}}:2 = memref.extract_strided_metadata %[[U]] : memref<?x?xf32>
// CHECK: arith.cmpi sge, %[[US]]#0, %{{.*}} : index
// CHECK: %[[C6:.*]] = arith.constant 6 : index
// CHECK: arith.cmpi eq, %[[US]]#1, %[[C6]] : index
// CHECK: %{{.*}}, %{{.*}}, %[[IS:.*]]:2, %{{.*}}:2 = memref.extract_strided_metadata %[[I]] : memref<?x?xi32>
// CHECK: %[[C4:.*]] = arith.constant 4 : index
// CHECK: arith.cmpi eq, %[[IS]]#1, %[[C4]] : index
// CHECK: scf.if %[[ALL:.*]] {
// CHECK-DAG: %[[UC:.*]] = memref.cast %[[U]] : memref<?x?xf32> to memref<?x6xf32>
// CHECK-DAG: %[[IC:.*]] = memref.cast %[[I]] : memref<?x?xi32> to memref<?x4xi32>
// CHECK: func.call @select_like(%[[UC]], %[[IC]], %[[T]])
// CHECK: } else {

// CHECK-NOT: func.func @helper_entry
// CHECK-NOT: func.func @returns_entry
// CHECK-NOT: sk_rt
// A user function may start with sparsek_; only the status accessors and
// the manifest (which the pass creates) get no entry point.
// CHECK-LABEL: func.func @sparsek_layer_entry(
// CHECK-NOT: func.func @sparsek_status_entry
// CHECK-NOT: func.func @sparsek_clear_status_entry
// CHECK-NOT: func.func @sparsek_manifest_entry
// CHECK: llvm.mlir.global internal constant @__sparsek_manifest_text(
// CHECK: func.func @sparsek_manifest() -> !llvm.ptr {
// CHECK: %[[P:.*]] = llvm.mlir.addressof @__sparsek_manifest_text : !llvm.ptr
// CHECK: return %[[P]] : !llvm.ptr

// The manifest (JSON, quotes printed as \22): arguments in order, sizes null
// where dynamic, `written` false only for buffers that are provably only
// read (a load; a read through a view; a read-only op), true for stores and
// for buffers handed to code the pass cannot see.
// MANIFEST: @__sparsek_manifest_text("{\22functions\22:[
// MANIFEST-SAME: {\22args\22:[{\22element\22:\22f32\22,\22identity_layout\22:true,\22kind\22:\22memref\22,\22shape\22:[null],\22written\22:false}],\22entry\22:\22layer_entry\22,\22name\22:\22layer\22}
// MANIFEST-SAME: {\22args\22:[{\22element\22:\22f32\22,\22identity_layout\22:true,\22kind\22:\22memref\22,\22shape\22:[null,6],\22written\22:false},{\22element\22:\22i32\22,\22identity_layout\22:true,\22kind\22:\22memref\22,\22shape\22:[null,4],\22written\22:true},{\22element\22:\22index\22,\22kind\22:\22scalar\22}],\22entry\22:\22select_like_entry\22,\22name\22:\22select_like\22}
// MANIFEST-SAME: {\22args\22:[{\22element\22:\22f32\22,{{.*}}\22written\22:false},{\22element\22:\22f32\22,{{.*}}\22written\22:true}],\22entry\22:\22copies_entry\22,\22name\22:\22copies\22}
// MANIFEST-SAME: {\22args\22:[{\22element\22:\22f32\22,{{.*}}\22written\22:true}],\22entry\22:\22escapes_entry\22,\22name\22:\22escapes\22}
// MANIFEST-SAME: ],\22index_bits\22:64,\22stream\22:false,\22version\22:1}\00")

// GPU-LABEL: func.func @layer_entry(
// GPU-SAME: %[[STREAM:.*]]: !llvm.ptr, %[[A:.*]]: memref<?xf32>) -> i32
// The caller's stream is lent even when null (the legacy default stream).
// GPU: call @sk_rt_lend_stream(%[[STREAM]]) : (!llvm.ptr) -> ()
// GPU: call @sparsek_clear_status()
// GPU: scf.if
// GPU-NEXT: func.call @layer(%[[A]])
// GPU: %[[S:.*]] = call @sparsek_status() : () -> i32
// GPU: %[[NULL:.*]] = llvm.mlir.zero : !llvm.ptr
// GPU: call @sk_rt_set_current_stream(%[[NULL]])
// GPU: %[[CUDA:.*]] = call @sk_rt_get_status() : () -> i32
// GPU-DAG: %[[OK:.*]] = arith.cmpi eq, %[[S]], %{{.*}} : i32
// GPU-DAG: %[[FAILED:.*]] = arith.cmpi ne, %[[CUDA]], %{{.*}} : i32
// GPU: %[[USE:.*]] = arith.andi %[[OK]], %[[FAILED]] : i1
// GPU: %[[R:.*]] = arith.select %[[USE]], %{{.*}}, %[[S]] : i32
// GPU: return %[[R]] : i32
// GPU-LABEL: func.func @select_like_entry(
// GPU-SAME: %{{.*}}: !llvm.ptr, %{{.*}}: memref<?x?xf32>, %[[I:.*]]: memref<?x?xi32>, %{{.*}}: index) -> i32
// GPU: %{{.*}}, %{{.*}}, %[[IS:.*]]:2, %{{.*}}:2 = memref.extract_strided_metadata %[[I]] : memref<?x?xi32>
// GPU: arith.cmpi eq, %[[IS]]#1, %{{.*}} : index
// GPU: memref.cast %[[I]] : memref<?x?xi32> to memref<?x4xi32>
// GPU-DAG: func.func private @sk_rt_lend_stream(!llvm.ptr)
// GPU-DAG: func.func private @sk_rt_set_current_stream(!llvm.ptr)
// GPU-DAG: func.func private @sk_rt_get_status() -> i32
// GPU: \22stream\22:true
func.func @layer(%a: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %x = memref.load %a[%c0] : memref<?xf32>
  return
}

func.func @select_like(%u: memref<?x6xf32>, %i: memref<?x4xi32>, %t: index) {
  %c0 = arith.constant 0 : index
  %v = memref.load %u[%t, %c0] : memref<?x6xf32>
  %c = arith.constant 1 : i32
  memref.store %c, %i[%t, %c0] : memref<?x4xi32>
  return
}

// Read through a view, written through a copy's target.
func.func @copies(%a: memref<?x8xf32>, %b: memref<?x8xf32>) {
  %row = memref.subview %a[0, 0] [1, 8] [1, 1] : memref<?x8xf32> to memref<1x8xf32, strided<[8, 1]>>
  %dst = memref.subview %b[0, 0] [1, 8] [1, 1] : memref<?x8xf32> to memref<1x8xf32, strided<[8, 1]>>
  memref.copy %row, %dst : memref<1x8xf32, strided<[8, 1]>> to memref<1x8xf32, strided<[8, 1]>>
  return
}

func.func private @unknown(%a: memref<?xf32>)

// Handed to an external function: it may write.
func.func @escapes(%a: memref<?xf32>) {
  call @unknown(%a) : (memref<?xf32>) -> ()
  return
}

func.func private @helper(%a: memref<?xf32>) {
  return
}

func.func @returns(%a: memref<?xf32>) -> memref<?xf32> {
  return %a : memref<?xf32>
}

func.func @sparsek_layer(%a: memref<?xf32>) {
  return
}
