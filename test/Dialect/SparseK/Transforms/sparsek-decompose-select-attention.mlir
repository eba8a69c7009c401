// select_attention becomes select (materialized indices, gates, tau) followed
// by attention with the same window and scale; dynamic sizes go through
// tensor.dim. The composite's check that scores and keys have the same S,
// which neither half can make, stays behind as sparsek.check_sizes (only
// where a size is dynamic: the verifier compared static ones).
// RUN: sparsek-opt %s -sparsek-decompose-select-attention -split-input-file | FileCheck %s
// RUN: sparsek-opt %s -sparsek-decompose-select-attention=index-bitwidth=64 -split-input-file | FileCheck %s --check-prefix=I64
// RUN: %mlir-opt-sparsek %s -p 'builtin.module(sparsek-decompose-select-attention{index-bitwidth=64})' -split-input-file | FileCheck %s --check-prefix=I64
// RUN: not sparsek-opt %s -sparsek-decompose-select-attention=index-bitwidth=16 -split-input-file 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: index-bitwidth must be 32 or 64, got 16

// CHECK-LABEL: func.func @dynamic
// CHECK-SAME: %[[Q:[^:]*]]: tensor<?x8x?x64xbf16>, %[[K:[^:]*]]: tensor<?x2x?x64xbf16>, %[[V:[^:]*]]: tensor<?x2x?x32xbf16>, %[[U:[^:]*]]: tensor<?x2x?xf32>, %[[O:[^:]*]]: tensor<?x8x?x32xbf16>
// CHECK-DAG: %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : index
// CHECK-DAG: %[[C16:.*]] = arith.constant 16 : index
// CHECK-DAG: %[[B:.*]] = tensor.dim %[[U]], %[[C0]]
// CHECK-DAG: %[[T:.*]] = tensor.dim %[[Q]], %[[C2]]
// CHECK-DAG: %[[SU:.*]] = tensor.dim %[[U]], %[[C2]]
// CHECK-DAG: %[[SK:.*]] = tensor.dim %[[K]], %[[C2]]
// CHECK: sparsek.check_sizes %[[SU]], %[[SK]]
// The lists hold min(k, S) entries, not k.
// CHECK-DAG: %[[LEN:.*]] = arith.minui %[[SU]], %[[C16]] : index
// CHECK-DAG: %[[I0:.*]] = tensor.empty(%[[B]], %[[T]], %[[LEN]]) : tensor<?x2x?x?xi32>
// CHECK-DAG: %[[G0:.*]] = tensor.empty(%[[B]], %[[T]], %[[LEN]]) : tensor<?x2x?x?xf32>
// CHECK-DAG: %[[T0:.*]] = tensor.empty(%[[B]], %[[T]]) : tensor<?x2x?xf32>
// CHECK: %[[I:.*]], %[[G:.*]], %{{.*}} = sparsek.select ins(%[[U]] : tensor<?x2x?xf32>) k = 16 w = 8 outs(%[[I0]], %[[G0]], %[[T0]] :
// CHECK: %[[R:.*]] = sparsek.attention ins(%[[Q]], %[[K]], %[[V]], %[[I]], %[[G]] : {{.*}}) w = 8 scale = 2.500000e-01 outs(%[[O]] : tensor<?x8x?x32xbf16>)
// CHECK-NOT: sparsek.select_attention
// CHECK: return %[[R]]
// I64-LABEL: func.func @dynamic
// I64: sparsek.select {{.*}} -> tensor<?x2x?x?xi64>
// I64: sparsek.attention {{.*}}tensor<?x2x?x?xi64>
func.func @dynamic(%q: tensor<?x8x?x64xbf16>, %k: tensor<?x2x?x64xbf16>,
                   %v: tensor<?x2x?x32xbf16>, %u: tensor<?x2x?xf32>,
                   %o0: tensor<?x8x?x32xbf16>) -> tensor<?x8x?x32xbf16> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x8x?x64xbf16>, tensor<?x2x?x64xbf16>,
                                    tensor<?x2x?x32xbf16>, tensor<?x2x?xf32>)
         k = 16 w = 8 scale = 0.25 outs(%o0 : tensor<?x8x?x32xbf16>) -> tensor<?x8x?x32xbf16>
  return %o : tensor<?x8x?x32xbf16>
}

// -----

// CHECK-LABEL: func.func @static_prefix
// CHECK-NOT: sparsek.check_sizes
// CHECK: %[[I0:.*]] = tensor.empty() : tensor<2x4x8x32xi32>
// CHECK: sparsek.select ins(%{{.*}} : tensor<2x4x40xf32>) k = 32 w = 0
// CHECK: sparsek.attention {{.*}} w = 0 outs
func.func @static_prefix(%q: tensor<2x4x8x16xf32>, %k: tensor<2x4x40x16xf32>,
                         %v: tensor<2x4x40x16xf32>, %u: tensor<2x4x40xf32>,
                         %o0: tensor<2x4x8x16xf32>) -> tensor<2x4x8x16xf32> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<2x4x8x16xf32>, tensor<2x4x40x16xf32>,
                                    tensor<2x4x40x16xf32>, tensor<2x4x40xf32>)
         k = 32 w = 0 outs(%o0 : tensor<2x4x8x16xf32>) -> tensor<2x4x8x16xf32>
  return %o : tensor<2x4x8x16xf32>
}

// -----

// A static S below k: the budget becomes S (the same selection and gates),
// and the lists hold S entries.
// CHECK-LABEL: func.func @budget_beyond_keys
// CHECK-NOT: sparsek.check_sizes
// CHECK: tensor.empty() : tensor<1x2x7x7xi32>
// CHECK: sparsek.select ins(%{{.*}} : tensor<1x2x7xf32>) k = 7 w = 2
func.func @budget_beyond_keys(%q: tensor<1x2x7x4xf32>, %k: tensor<1x2x7x4xf32>,
                              %v: tensor<1x2x7x4xf32>, %u: tensor<1x2x7xf32>,
                              %o0: tensor<1x2x7x4xf32>) -> tensor<1x2x7x4xf32> {
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<1x2x7x4xf32>, tensor<1x2x7x4xf32>,
                                    tensor<1x2x7x4xf32>, tensor<1x2x7xf32>)
         k = 1073741824 w = 2 outs(%o0 : tensor<1x2x7x4xf32>) -> tensor<1x2x7x4xf32>
  return %o : tensor<1x2x7x4xf32>
}
