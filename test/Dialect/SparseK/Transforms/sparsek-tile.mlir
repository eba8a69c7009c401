// sparsek-tile: scf.forall over (batch, head, query block) through the
// TilingInterface; query tiles read the key prefix ending at their last
// query; head tiles keep GQA groups whole.
// RUN: sparsek-opt %s -split-input-file -verify-diagnostics "-sparsek-tile=attention-tile-sizes=1,4,32 score-tile-sizes=1,1,64 decode-tile-sizes=1,4 map-to-blocks" | FileCheck %s
// RUN: sparsek-opt %s -split-input-file "-sparsek-tile=attention-tile-sizes=0,1,16" | FileCheck %s --check-prefix=ONE
// RUN: not sparsek-opt %s -split-input-file "-sparsek-tile=attention-tile-sizes=1,4" 2>&1 | FileCheck %s --check-prefix=COUNT
// RUN: %mlir-opt-sparsek %s -split-input-file -p 'builtin.module(sparsek-tile{attention-tile-sizes=0,1,16})' | FileCheck %s --check-prefix=ONE

// COUNT: sparsek-tile: attention-tile-sizes needs 3 sizes, got 2

// CHECK-DAG: #[[$MIN:.*]] = affine_map<(d0)[s0] -> (-d0 + s0, 32)>
// CHECK-DAG: #[[$KV:.*]] = affine_map<()[s0] -> (s0 floordiv 4)>
// CHECK-DAG: #[[$PREFIX:.*]] = affine_map<()[s0, s1, s2, s3] -> (s0 - s1 + s2 + s3)>
// CHECK-LABEL: func.func @attention
// CHECK-SAME: %[[Q:[^:]*]]: tensor<2x8x?x16xf32>, %[[K:[^:]*]]: tensor<2x2x?x16xf32>, %[[V:[^:]*]]: tensor<2x2x?x16xf32>, %[[I:[^:]*]]: tensor<2x2x?x4xi32>, %[[G:[^:]*]]: tensor<2x2x?x4xf32>, %[[O:[^:]*]]: tensor<2x8x?x16xf32>
// CHECK: %[[T:.*]] = tensor.dim %[[Q]]
// CHECK: %[[R:.*]] = scf.forall (%[[B:.*]], %[[H:.*]], %[[T0:.*]]) = (0, 0, 0) to (2, 8, %[[T]]) step (1, 4, 32) shared_outs(%[[OUT:.*]] = %[[O]])
// CHECK:   %[[TS:.*]] = affine.min #[[$MIN]](%[[T0]])[%[[T]]]
// CHECK:   %[[KVH:.*]] = affine.apply #[[$KV]]()[%[[H]]]
// CHECK:   %[[S:.*]] = tensor.dim %[[K]]
// CHECK:   %[[KEYS:.*]] = affine.apply #[[$PREFIX]]()[%[[S]], %{{.*}}, %[[T0]], %[[TS]]]
// CHECK:   %[[QS:.*]] = tensor.extract_slice %[[Q]][%[[B]], %[[H]], %[[T0]], 0] [1, 4, %[[TS]], 16]
// CHECK:   %[[KS:.*]] = tensor.extract_slice %[[K]][%[[B]], %[[KVH]], 0, 0] [1, 1, %[[KEYS]], 16]
// CHECK:   %[[VS:.*]] = tensor.extract_slice %[[V]][%[[B]], %[[KVH]], 0, 0] [1, 1, %[[KEYS]], 16]
// CHECK:   %[[IS:.*]] = tensor.extract_slice %[[I]][%[[B]], %[[KVH]], %[[T0]], 0] [1, 1, %[[TS]], 4]
// CHECK:   %[[GS:.*]] = tensor.extract_slice %[[G]][%[[B]], %[[KVH]], %[[T0]], 0] [1, 1, %[[TS]], 4]
// CHECK:   %[[OS:.*]] = tensor.extract_slice %[[OUT]][%[[B]], %[[H]], %[[T0]], 0] [1, 4, %[[TS]], 16]
// CHECK:   %[[A:.*]] = sparsek.attention ins(%[[QS]], %[[KS]], %[[VS]], %[[IS]], %[[GS]] : {{.*}}) w = 4 outs(%[[OS]] : tensor<1x4x?x16xf32>)
// CHECK:   tensor.parallel_insert_slice %[[A]] into %[[OUT]][%[[B]], %[[H]], %[[T0]], 0] [1, 4, %[[TS]], 16]
// CHECK: } {mapping = [#gpu.block<z>, #gpu.block<y>, #gpu.block<x>]}
// CHECK: return %[[R]]
// ONE-LABEL: func.func @attention
// ONE: scf.forall (%[[H:.*]], %[[T0:.*]]) = (0, 0) to (8, %{{.*}}) step (1, 16)
// ONE: tensor.extract_slice %{{.*}}[0, %{{.*}}, 0, 0] [2, 1, %{{.*}}, 16]
// ONE-NOT: mapping
func.func @attention(%q: tensor<2x8x?x16xf32>, %k: tensor<2x2x?x16xf32>, %v: tensor<2x2x?x16xf32>,
                     %i: tensor<2x2x?x4xi32>, %g: tensor<2x2x?x4xf32>, %o0: tensor<2x8x?x16xf32>)
    -> tensor<2x8x?x16xf32> {
  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<2x8x?x16xf32>, tensor<2x2x?x16xf32>,
                             tensor<2x2x?x16xf32>, tensor<2x2x?x4xi32>, tensor<2x2x?x4xf32>)
         w = 4 outs(%o0 : tensor<2x8x?x16xf32>) -> tensor<2x8x?x16xf32>
  return %o : tensor<2x8x?x16xf32>
}

// -----

// The tile of tokens [t0, t0 + 64) scores positions offset + t0 onwards.
// CHECK-LABEL: func.func @score
// CHECK-SAME: %[[X:[^:]*]]: tensor<1x?x32xf32>, %[[W:[^:]*]]: tensor<4x32xf32>, %[[S:[^:]*]]: tensor<4xf32>, %[[OFF:[^:]*]]: index
// CHECK: scf.forall (%[[B:.*]], %[[H:.*]], %[[T0:.*]]) = (0, 0, 0) to (1, 4, %{{.*}}) step (1, 1, 64)
// CHECK:   %[[XS:.*]] = tensor.extract_slice %[[X]][%[[B]], %[[T0]], 0]
// CHECK:   %[[WS:.*]] = tensor.extract_slice %[[W]][%[[H]], 0] [1, 32]
// CHECK:   %[[SS:.*]] = tensor.extract_slice %[[S]][%[[H]]] [1]
// CHECK:   %[[TOFF:.*]] = affine.apply #{{.*}}()[%[[OFF]], %[[T0]]]
// CHECK:   sparsek.score ins(%[[XS]], %[[WS]] : {{.*}}) slope(%[[SS]] : tensor<1xf32>) offset(%[[TOFF]])
func.func @score(%x: tensor<1x?x32xf32>, %w: tensor<4x32xf32>, %s: tensor<4xf32>, %off: index,
                 %u0: tensor<1x4x?xf32>) -> tensor<1x4x?xf32> {
  %u = sparsek.score ins(%x, %w : tensor<1x?x32xf32>, tensor<4x32xf32>) slope(%s : tensor<4xf32>)
         offset(%off) outs(%u0 : tensor<1x4x?xf32>) -> tensor<1x4x?xf32>
  return %u : tensor<1x4x?xf32>
}

// -----

// CHECK-LABEL: func.func @decode
// CHECK: scf.forall (%[[B:.*]], %[[H:.*]]) = (0, 0) to (%{{.*}}, 8) step (1, 4)
// CHECK:   %[[KVH:.*]] = affine.apply #{{.*}}()[%[[H]]]
// CHECK:   tensor.extract_slice %{{.*}}[%[[B]], %[[KVH]], 0, 0] [1, 1, 12, 16]
// CHECK:   tensor.extract_slice %{{.*}}[%[[B]]] [1]
// CHECK:   sparsek.decode_attention {{.*}} k = 8 w = 4 outs(%{{.*}} : tensor<1x4x16xf32>)
func.func @decode(%q: tensor<?x8x16xf32>, %kc: tensor<?x2x12x16xf32>, %vc: tensor<?x2x12x16xf32>,
                  %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>,
                  %pos: tensor<?xi64>, %o0: tensor<?x8x16xf32>) -> tensor<?x8x16xf32> {
  %o = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x8x16xf32>,
           tensor<?x2x12x16xf32>, tensor<?x2x12x16xf32>, tensor<?x2x12xf32>, tensor<?x2xf32>,
           tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o0 : tensor<?x8x16xf32>) -> tensor<?x8x16xf32>
  return %o : tensor<?x8x16xf32>
}

// -----

// A head tile that splits a GQA group (G = 8) is refused.
func.func @split_group(%q: tensor<1x16x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x16xf32>,
                       %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o0: tensor<1x16x?x16xf32>)
    -> tensor<1x16x?x16xf32> {
  // expected-error@+3 {{cannot tile query heads by 4}}
  // expected-error@+2 {{faild to tile operation}}
  // expected-error@+1 {{failed to generate tiling loops}}
  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x16x?x16xf32>, tensor<1x2x?x16xf32>,
                             tensor<1x2x?x16xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>)
         w = 4 outs(%o0 : tensor<1x16x?x16xf32>) -> tensor<1x16x?x16xf32>
  return %o : tensor<1x16x?x16xf32>
}
