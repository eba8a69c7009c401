// The GPU entry points compare every size the caller passes with the
// function type, static sizes included (select's k, decode's k + w slots and
// head dim), before anything is launched: the host code reads the sizes
// from the descriptors (a memref descriptor expands to allocated, aligned,
// offset, sizes..., strides...; the stream comes first), and a mismatch
// records SPARSEK_ERROR_SHAPE_MISMATCH (2) instead of calling the function.
// RUN: sparsek-opt %s --sparsek-gpu-pipeline="format=isa" | FileCheck %s

// CHECK-LABEL: llvm.func @select_entry(
// u: %arg1..%arg9, indices: %arg10..%arg20 (sizes %arg13..%arg16), gates:
// %arg21..%arg31 (sizes %arg24..%arg27).
// CHECK-DAG: %[[ZERO:.*]] = llvm.mlir.constant(0 : index) : i64
// CHECK-DAG: %[[K:.*]] = llvm.mlir.constant(4 : index) : i64
// CHECK-DAG: %[[MISMATCH:.*]] = llvm.mlir.constant(2 : i32) : i32
// CHECK: llvm.call @sparsek_clear_status()
// CHECK: llvm.icmp "sge" %arg13, %[[ZERO]] : i64
// CHECK: llvm.icmp "eq" %arg16, %[[K]] : i64
// CHECK: llvm.icmp "eq" %arg27, %[[K]] : i64
// CHECK: llvm.cond_br %{{.*}}, ^[[CALL:.*]], ^[[FAIL:[^ ]*]]
// CHECK: ^[[CALL]]:
// CHECK-NEXT: llvm.call @select(
// CHECK: ^[[FAIL]]:
// CHECK: llvm.select %{{.*}}, %[[MISMATCH]], %{{.*}} : i1, i32
// CHECK: llvm.call @sparsek_status()
func.func @select(%u: tensor<?x?x?xf32>, %i0: tensor<?x?x?x4xi32>, %g0: tensor<?x?x?x4xf32>,
                  %t0: tensor<?x?x?xf32>)
    -> (tensor<?x?x?x4xi32>, tensor<?x?x?x4xf32>, tensor<?x?x?xf32>) {
  %i, %g, %t = sparsek.select ins(%u : tensor<?x?x?xf32>) k = 4 w = 2
      outs(%i0, %g0, %t0 : tensor<?x?x?x4xi32>, tensor<?x?x?x4xf32>, tensor<?x?x?xf32>)
      -> tensor<?x?x?x4xi32>, tensor<?x?x?x4xf32>, tensor<?x?x?xf32>
  return %i, %g, %t : tensor<?x?x?x4xi32>, tensor<?x?x?x4xf32>, tensor<?x?x?xf32>
}

// CHECK-LABEL: llvm.func @decode_entry(
// q: %arg1..%arg9 (head dim %arg6); key slots: %arg10..%arg20 (slots
// %arg15, head dim %arg16); value slots: %arg21..%arg31 (%arg26, %arg27);
// slot scores: %arg32..%arg40 (slots %arg37); out: head dim %arg65.
// CHECK-DAG: %[[D:.*]] = llvm.mlir.constant(64 : index) : i64
// CHECK-DAG: %[[SLOTS:.*]] = llvm.mlir.constant(7 : index) : i64
// CHECK: llvm.icmp "eq" %arg6, %[[D]] : i64
// CHECK: llvm.icmp "eq" %arg15, %[[SLOTS]] : i64
// CHECK: llvm.icmp "eq" %arg16, %[[D]] : i64
// CHECK: llvm.icmp "eq" %arg26, %[[SLOTS]] : i64
// CHECK: llvm.icmp "eq" %arg27, %[[D]] : i64
// CHECK: llvm.icmp "eq" %arg37, %[[SLOTS]] : i64
// CHECK: llvm.icmp "eq" %arg65, %[[D]] : i64
// CHECK: llvm.cond_br %{{.*}}, ^[[CALL:.*]], ^{{.*}}
// CHECK: ^[[CALL]]:
// CHECK-NEXT: llvm.call @decode(
// The signatures are exported for callers that bind at run time.
// CHECK: llvm.func @sparsek_manifest() -> !llvm.ptr
func.func @decode(%q: tensor<?x?x64xbf16>, %kc: tensor<?x?x7x64xbf16>, %vc: tensor<?x?x7x64xbf16>,
                  %sc: tensor<?x?x7xf32>, %tau: tensor<?x?xf32>, %cnt: tensor<?x?xi32>,
                  %pos: tensor<?xi64>, %o0: tensor<?x?x64xbf16>) -> tensor<?x?x64xbf16> {
  %o = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos
      : tensor<?x?x64xbf16>, tensor<?x?x7x64xbf16>, tensor<?x?x7x64xbf16>, tensor<?x?x7xf32>,
        tensor<?x?xf32>, tensor<?x?xi32>, tensor<?xi64>) k = 4 w = 3
      outs(%o0 : tensor<?x?x64xbf16>) -> tensor<?x?x64xbf16>
  return %o : tensor<?x?x64xbf16>
}
