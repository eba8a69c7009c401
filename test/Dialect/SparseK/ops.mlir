// Every sparsek op, with static and dynamic shapes, round-trips through the
// custom form and through the generic form.
// RUN: sparsek-opt %s | sparsek-opt | FileCheck %s
// RUN: sparsek-opt %s --mlir-print-op-generic | sparsek-opt | FileCheck %s
// RUN: %mlir-opt-sparsek %s | %mlir-opt-sparsek | FileCheck %s

// CHECK-LABEL: func.func @score_static
func.func @score_static(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xbf16>,
                        %init: tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  // CHECK: sparsek.score ins(%{{.*}}, %{{.*}} : tensor<2x16x64xbf16>, tensor<4x64xbf16>) outs(%{{.*}} : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xbf16>)
         outs(%init : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  return %u : tensor<2x4x16xf32>
}

// CHECK-LABEL: func.func @score_dynamic_all_options
// CHECK-SAME: %[[X:.*]]: tensor<?x?x64xf32>, %[[W:.*]]: tensor<4x64xf32>, %[[B:.*]]: tensor<4xf32>, %[[S:.*]]: tensor<4xf32>, %[[OFF:.*]]: index, %[[I:.*]]: tensor<?x4x?xf32>
func.func @score_dynamic_all_options(%x: tensor<?x?x64xf32>, %w: tensor<4x64xf32>,
                                     %b: tensor<4xf32>, %s: tensor<4xf32>,
                                     %off: index, %init: tensor<?x4x?xf32>)
    -> tensor<?x4x?xf32> {
  // CHECK: sparsek.score ins(%[[X]], %[[W]] : tensor<?x?x64xf32>, tensor<4x64xf32>) bias(%[[B]] : tensor<4xf32>) slope(%[[S]] : tensor<4xf32>) offset(%[[OFF]]) outs(%[[I]] : tensor<?x4x?xf32>) -> tensor<?x4x?xf32>
  %u = sparsek.score ins(%x, %w : tensor<?x?x64xf32>, tensor<4x64xf32>)
         bias(%b : tensor<4xf32>) slope(%s : tensor<4xf32>) offset(%off)
         outs(%init : tensor<?x4x?xf32>) -> tensor<?x4x?xf32>
  return %u : tensor<?x4x?xf32>
}

// CHECK-LABEL: func.func @score_slope_only
func.func @score_slope_only(%x: tensor<1x8x16xf16>, %w: tensor<2x16xf16>,
                            %s: tensor<2xf32>, %init: tensor<1x2x8xf32>)
    -> tensor<1x2x8xf32> {
  // CHECK: sparsek.score ins({{.*}}) slope(%{{.*}} : tensor<2xf32>) outs(
  %u = sparsek.score ins(%x, %w : tensor<1x8x16xf16>, tensor<2x16xf16>)
         slope(%s : tensor<2xf32>) outs(%init : tensor<1x2x8xf32>) -> tensor<1x2x8xf32>
  return %u : tensor<1x2x8xf32>
}

// CHECK-LABEL: func.func @mask
func.func @mask(%z: tensor<8x?xf32>, %p0: tensor<8x?xf32>, %t0: tensor<8xf32>,
                %z1: tensor<32xf32>, %p1: tensor<32xf32>, %t1: tensor<f32>)
    -> (tensor<8x?xf32>, tensor<8xf32>, tensor<32xf32>, tensor<f32>) {
  // CHECK: sparsek.mask ins(%{{.*}} : tensor<8x?xf32>) k = 16 outs(%{{.*}}, %{{.*}} : tensor<8x?xf32>, tensor<8xf32>) -> tensor<8x?xf32>, tensor<8xf32>
  %p, %tau = sparsek.mask ins(%z : tensor<8x?xf32>) k = 16
               outs(%p0, %t0 : tensor<8x?xf32>, tensor<8xf32>)
               -> tensor<8x?xf32>, tensor<8xf32>
  // CHECK: sparsek.mask ins(%{{.*}} : tensor<32xf32>) k = 0 outs(%{{.*}}, %{{.*}} : tensor<32xf32>, tensor<f32>) -> tensor<32xf32>, tensor<f32>
  %q, %sigma = sparsek.mask ins(%z1 : tensor<32xf32>) k = 0
                 outs(%p1, %t1 : tensor<32xf32>, tensor<f32>)
                 -> tensor<32xf32>, tensor<f32>
  return %p, %tau, %q, %sigma : tensor<8x?xf32>, tensor<8xf32>, tensor<32xf32>, tensor<f32>
}

// CHECK-LABEL: func.func @select_dynamic
func.func @select_dynamic(%u: tensor<?x8x?xf32>, %i0: tensor<?x8x?x64xi32>,
                          %g0: tensor<?x8x?x64xf32>, %t0: tensor<?x8x?xf32>)
    -> (tensor<?x8x?x64xi32>, tensor<?x8x?x64xf32>, tensor<?x8x?xf32>) {
  // CHECK: sparsek.select ins(%{{.*}} : tensor<?x8x?xf32>) k = 64 w = 32 outs(%{{.*}}, %{{.*}}, %{{.*}} : tensor<?x8x?x64xi32>, tensor<?x8x?x64xf32>, tensor<?x8x?xf32>) -> tensor<?x8x?x64xi32>, tensor<?x8x?x64xf32>, tensor<?x8x?xf32>
  %idx, %g, %tau = sparsek.select ins(%u : tensor<?x8x?xf32>) k = 64 w = 32
      outs(%i0, %g0, %t0 : tensor<?x8x?x64xi32>, tensor<?x8x?x64xf32>, tensor<?x8x?xf32>)
      -> tensor<?x8x?x64xi32>, tensor<?x8x?x64xf32>, tensor<?x8x?xf32>
  return %idx, %g, %tau : tensor<?x8x?x64xi32>, tensor<?x8x?x64xf32>, tensor<?x8x?xf32>
}

// CHECK-LABEL: func.func @select_static_i64_prefix
func.func @select_static_i64_prefix(%u: tensor<1x2x128xf32>, %i0: tensor<1x2x16x8xi64>,
                                    %g0: tensor<1x2x16x8xf32>, %t0: tensor<1x2x16xf32>)
    -> (tensor<1x2x16x8xi64>, tensor<1x2x16x8xf32>, tensor<1x2x16xf32>) {
  // CHECK: sparsek.select ins(%{{.*}} : tensor<1x2x128xf32>) k = 8 w = 0 outs(
  %idx, %g, %tau = sparsek.select ins(%u : tensor<1x2x128xf32>) k = 8 w = 0
      outs(%i0, %g0, %t0 : tensor<1x2x16x8xi64>, tensor<1x2x16x8xf32>, tensor<1x2x16xf32>)
      -> tensor<1x2x16x8xi64>, tensor<1x2x16x8xf32>, tensor<1x2x16xf32>
  return %idx, %g, %tau : tensor<1x2x16x8xi64>, tensor<1x2x16x8xf32>, tensor<1x2x16xf32>
}

// CHECK-LABEL: func.func @attention_gqa_dynamic
func.func @attention_gqa_dynamic(%q: tensor<1x32x?x128xbf16>, %k: tensor<1x8x?x128xbf16>,
                                 %v: tensor<1x8x?x128xbf16>, %idx: tensor<1x8x?x64xi32>,
                                 %g: tensor<1x8x?x64xf32>, %o0: tensor<1x32x?x128xbf16>)
    -> tensor<1x32x?x128xbf16> {
  // CHECK: sparsek.attention ins(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<1x32x?x128xbf16>, tensor<1x8x?x128xbf16>, tensor<1x8x?x128xbf16>, tensor<1x8x?x64xi32>, tensor<1x8x?x64xf32>) w = 32 outs(%{{.*}} : tensor<1x32x?x128xbf16>) -> tensor<1x32x?x128xbf16>
  %o = sparsek.attention
         ins(%q, %k, %v, %idx, %g : tensor<1x32x?x128xbf16>, tensor<1x8x?x128xbf16>,
             tensor<1x8x?x128xbf16>, tensor<1x8x?x64xi32>, tensor<1x8x?x64xf32>)
         w = 32 outs(%o0 : tensor<1x32x?x128xbf16>) -> tensor<1x32x?x128xbf16>
  return %o : tensor<1x32x?x128xbf16>
}

// CHECK-LABEL: func.func @attention_static_scale
func.func @attention_static_scale(%q: tensor<2x4x8x16xf32>, %k: tensor<2x4x24x16xf32>,
                                  %v: tensor<2x4x24x32xf32>, %idx: tensor<2x4x8x4xi64>,
                                  %g: tensor<2x4x8x4xf32>, %o0: tensor<2x4x8x32xf32>)
    -> tensor<2x4x8x32xf32> {
  // CHECK: sparsek.attention ins({{.*}}) w = 0 scale = 2.500000e-01 outs(%{{.*}} : tensor<2x4x8x32xf32>)
  %o = sparsek.attention
         ins(%q, %k, %v, %idx, %g : tensor<2x4x8x16xf32>, tensor<2x4x24x16xf32>,
             tensor<2x4x24x32xf32>, tensor<2x4x8x4xi64>, tensor<2x4x8x4xf32>)
         w = 0 scale = 0.25 outs(%o0 : tensor<2x4x8x32xf32>) -> tensor<2x4x8x32xf32>
  return %o : tensor<2x4x8x32xf32>
}

// CHECK-LABEL: func.func @select_attention
func.func @select_attention(%q: tensor<?x32x?x128xf16>, %k: tensor<?x8x?x128xf16>,
                            %v: tensor<?x8x?x128xf16>, %u: tensor<?x8x?xf32>,
                            %o0: tensor<?x32x?x128xf16>) -> tensor<?x32x?x128xf16> {
  // CHECK: sparsek.select_attention ins(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x32x?x128xf16>, tensor<?x8x?x128xf16>, tensor<?x8x?x128xf16>, tensor<?x8x?xf32>) k = 2048 w = 512 scale = 1.250000e-01 outs(%{{.*}} : tensor<?x32x?x128xf16>) -> tensor<?x32x?x128xf16>
  %o = sparsek.select_attention
         ins(%q, %k, %v, %u : tensor<?x32x?x128xf16>, tensor<?x8x?x128xf16>,
             tensor<?x8x?x128xf16>, tensor<?x8x?xf32>)
         k = 2048 w = 512 scale = 0.125 outs(%o0 : tensor<?x32x?x128xf16>)
         -> tensor<?x32x?x128xf16>
  return %o : tensor<?x32x?x128xf16>
}

// CHECK-LABEL: func.func @decode_attention
func.func @decode_attention(%q: tensor<?x32x128xbf16>, %kc: tensor<?x8x2560x128xbf16>,
                            %vc: tensor<?x8x2560x128xbf16>, %sc: tensor<?x8x2560xf32>,
                            %tau: tensor<?x8xf32>, %cnt: tensor<?x8xi32>,
                            %pos: tensor<?xi64>, %o0: tensor<?x32x128xbf16>)
    -> tensor<?x32x128xbf16> {
  // CHECK: sparsek.decode_attention ins(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x32x128xbf16>, tensor<?x8x2560x128xbf16>, tensor<?x8x2560x128xbf16>, tensor<?x8x2560xf32>, tensor<?x8xf32>, tensor<?x8xi32>, tensor<?xi64>) k = 2048 w = 512 outs(%{{.*}} : tensor<?x32x128xbf16>) -> tensor<?x32x128xbf16>
  %o = sparsek.decode_attention
         ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x32x128xbf16>,
             tensor<?x8x2560x128xbf16>, tensor<?x8x2560x128xbf16>, tensor<?x8x2560xf32>,
             tensor<?x8xf32>, tensor<?x8xi32>, tensor<?xi64>)
         k = 2048 w = 512 outs(%o0 : tensor<?x32x128xbf16>) -> tensor<?x32x128xbf16>
  return %o : tensor<?x32x128xbf16>
}

// CHECK-LABEL: func.func @decode_attention_static
func.func @decode_attention_static(%q: tensor<4x4x16xf32>, %kc: tensor<4x4x12x16xf32>,
                                   %vc: tensor<4x4x12x8xf32>, %sc: tensor<4x4x12xf32>,
                                   %tau: tensor<4x4xf32>, %cnt: tensor<4x4xi32>,
                                   %pos: tensor<4xi64>, %o0: tensor<4x4x8xf32>)
    -> tensor<4x4x8xf32> {
  // CHECK: sparsek.decode_attention ins({{.*}}) k = 8 w = 4 scale = 5.000000e-01 outs(%{{.*}} : tensor<4x4x8xf32>)
  %o = sparsek.decode_attention
         ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<4x4x16xf32>,
             tensor<4x4x12x16xf32>, tensor<4x4x12x8xf32>, tensor<4x4x12xf32>,
             tensor<4x4xf32>, tensor<4x4xi32>, tensor<4xi64>)
         k = 8 w = 4 scale = 0.5 outs(%o0 : tensor<4x4x8xf32>) -> tensor<4x4x8xf32>
  return %o : tensor<4x4x8xf32>
}

// Buffer form (after bufferization): memref operands, no results.
// CHECK-LABEL: func.func @buffer_form
func.func @buffer_form(%u: memref<1x2x?xf32>, %i: memref<1x2x?x8xi32>,
                       %g: memref<1x2x?x8xf32>, %t: memref<1x2x?xf32>,
                       %q: memref<1x4x?x16xf32>, %k: memref<1x2x?x16xf32>,
                       %v: memref<1x2x?x16xf32>, %o: memref<1x4x?x16xf32>,
                       %z: memref<?xf32>, %p: memref<?xf32>, %tz: memref<f32>) {
  // CHECK: sparsek.select ins(%{{.*}} : memref<1x2x?xf32>) k = 8 w = 4 outs(%{{.*}}, %{{.*}}, %{{.*}} : memref<1x2x?x8xi32>, memref<1x2x?x8xf32>, memref<1x2x?xf32>)
  // CHECK-NOT: ->
  sparsek.select ins(%u : memref<1x2x?xf32>) k = 8 w = 4
      outs(%i, %g, %t : memref<1x2x?x8xi32>, memref<1x2x?x8xf32>, memref<1x2x?xf32>)
  // CHECK: sparsek.attention ins({{.*}}) w = 4 outs(%{{.*}} : memref<1x4x?x16xf32>)
  sparsek.attention ins(%q, %k, %v, %i, %g : memref<1x4x?x16xf32>, memref<1x2x?x16xf32>,
                        memref<1x2x?x16xf32>, memref<1x2x?x8xi32>, memref<1x2x?x8xf32>)
      w = 4 outs(%o : memref<1x4x?x16xf32>)
  // CHECK: sparsek.mask ins(%{{.*}} : memref<?xf32>) k = 3 outs(%{{.*}}, %{{.*}} : memref<?xf32>, memref<f32>)
  sparsek.mask ins(%z : memref<?xf32>) k = 3 outs(%p, %tz : memref<?xf32>, memref<f32>)
  return
}

// Gradient ops (SPEC 5 "Backward"), tensor form: f32 gradients of bf16 data.
// CHECK-LABEL: func.func @attention_grad
func.func @attention_grad(%q: tensor<1x8x?x64xbf16>, %k: tensor<1x2x?x64xbf16>,
                          %v: tensor<1x2x?x32xbf16>, %i: tensor<1x2x?x16xi32>,
                          %g: tensor<1x2x?x16xf32>, %do: tensor<1x8x?x32xbf16>,
                          %dq0: tensor<1x8x?x64xf32>, %dk0: tensor<1x2x?x64xf32>,
                          %dv0: tensor<1x2x?x32xf32>, %dg0: tensor<1x2x?x16xf32>)
    -> (tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x16xf32>) {
  // CHECK: %[[DQ:.*]], %[[DK:.*]], %[[DV:.*]], %[[DG:.*]] = sparsek.attention_grad ins({{.*}}) w = 4 scale = 5.000000e-01 outs({{.*}}) -> tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x16xf32>
  %dq, %dk, %dv, %dg = sparsek.attention_grad
      ins(%q, %k, %v, %i, %g, %do : tensor<1x8x?x64xbf16>, tensor<1x2x?x64xbf16>,
          tensor<1x2x?x32xbf16>, tensor<1x2x?x16xi32>, tensor<1x2x?x16xf32>,
          tensor<1x8x?x32xbf16>)
      w = 4 scale = 0.5
      outs(%dq0, %dk0, %dv0, %dg0 : tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>,
           tensor<1x2x?x32xf32>, tensor<1x2x?x16xf32>)
      -> tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x16xf32>
  // CHECK: return %[[DQ]], %[[DK]], %[[DV]], %[[DG]]
  return %dq, %dk, %dv, %dg : tensor<1x8x?x64xf32>, tensor<1x2x?x64xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x16xf32>
}

// CHECK-LABEL: func.func @select_grad
func.func @select_grad(%u: tensor<2x2x?xf32>, %i: tensor<2x2x?x8xi64>, %t: tensor<2x2x?xf32>,
                       %dg: tensor<2x2x?x8xf32>, %du0: tensor<2x2x?xf32>) -> tensor<2x2x?xf32> {
  // CHECK: sparsek.select_grad ins({{.*}} : tensor<2x2x?xf32>, tensor<2x2x?x8xi64>, tensor<2x2x?xf32>, tensor<2x2x?x8xf32>) w = 0 outs(%{{.*}} : tensor<2x2x?xf32>) -> tensor<2x2x?xf32>
  %du = sparsek.select_grad ins(%u, %i, %t, %dg : tensor<2x2x?xf32>, tensor<2x2x?x8xi64>,
                                tensor<2x2x?xf32>, tensor<2x2x?x8xf32>)
      w = 0 outs(%du0 : tensor<2x2x?xf32>) -> tensor<2x2x?xf32>
  return %du : tensor<2x2x?xf32>
}

// CHECK-LABEL: func.func @select_attention_grad
func.func @select_attention_grad(%q: tensor<?x4x?x16xf32>, %k: tensor<?x2x?x16xf32>,
                                 %v: tensor<?x2x?x8xf32>, %u: tensor<?x2x?xf32>,
                                 %do: tensor<?x4x?x8xf32>, %dq0: tensor<?x4x?x16xf32>,
                                 %dk0: tensor<?x2x?x16xf32>, %dv0: tensor<?x2x?x8xf32>,
                                 %du0: tensor<?x2x?xf32>)
    -> (tensor<?x4x?x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?xf32>) {
  // CHECK: %[[DQ:.*]], %[[DK:.*]], %[[DV:.*]], %[[DU:.*]] = sparsek.select_attention_grad ins({{.*}}) k = 0 w = 4 outs({{.*}})
  %dq, %dk, %dv, %du = sparsek.select_attention_grad
      ins(%q, %k, %v, %u, %do : tensor<?x4x?x16xf32>, tensor<?x2x?x16xf32>,
          tensor<?x2x?x8xf32>, tensor<?x2x?xf32>, tensor<?x4x?x8xf32>)
      k = 0 w = 4
      outs(%dq0, %dk0, %dv0, %du0 : tensor<?x4x?x16xf32>, tensor<?x2x?x16xf32>,
           tensor<?x2x?x8xf32>, tensor<?x2x?xf32>)
      -> tensor<?x4x?x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?xf32>
  return %dq, %dk, %dv, %du : tensor<?x4x?x16xf32>, tensor<?x2x?x16xf32>, tensor<?x2x?x8xf32>, tensor<?x2x?xf32>
}

// CHECK-LABEL: func.func @score_grad
func.func @score_grad(%x: tensor<2x?x64xf16>, %w: tensor<4x64xf16>, %du: tensor<2x4x?xf32>,
                      %off: index, %dx0: tensor<2x?x64xf32>, %dw0: tensor<4x64xf32>,
                      %db0: tensor<4xf32>, %ds0: tensor<4xf32>)
    -> (tensor<2x?x64xf32>, tensor<4x64xf32>, tensor<4xf32>, tensor<4xf32>) {
  // CHECK: %[[DX:.*]], %[[DW:.*]], %[[DB:.*]], %[[DS:.*]] = sparsek.score_grad ins({{.*}} : tensor<2x?x64xf16>, tensor<4x64xf16>, tensor<2x4x?xf32>) offset(%{{.*}}) outs({{.*}})
  %dx, %dw, %db, %ds = sparsek.score_grad ins(%x, %w, %du : tensor<2x?x64xf16>, tensor<4x64xf16>,
                                              tensor<2x4x?xf32>) offset(%off)
      outs(%dx0, %dw0, %db0, %ds0 : tensor<2x?x64xf32>, tensor<4x64xf32>, tensor<4xf32>, tensor<4xf32>)
      -> tensor<2x?x64xf32>, tensor<4x64xf32>, tensor<4xf32>, tensor<4xf32>
  return %dx, %dw, %db, %ds : tensor<2x?x64xf32>, tensor<4x64xf32>, tensor<4xf32>, tensor<4xf32>
}

// CHECK-LABEL: func.func @grad_buffer_form
func.func @grad_buffer_form(%z: memref<3x?xf32>, %t: memref<3xf32>, %dp: memref<3x?xf32>,
                            %dz: memref<3x?xf32>, %x: memref<1x?x8xf32>, %w: memref<2x8xf32>,
                            %du: memref<1x2x?xf32>, %dx: memref<1x?x8xf32>,
                            %dw: memref<2x8xf32>, %db: memref<2xf32>, %ds: memref<2xf32>) {
  // CHECK: sparsek.mask_grad ins({{.*}} : memref<3x?xf32>, memref<3xf32>, memref<3x?xf32>) outs(%{{.*}} : memref<3x?xf32>)
  // CHECK-NOT: ->
  sparsek.mask_grad ins(%z, %t, %dp : memref<3x?xf32>, memref<3xf32>, memref<3x?xf32>)
      outs(%dz : memref<3x?xf32>)
  // CHECK: sparsek.score_grad ins({{.*}}) outs({{.*}} : memref<1x?x8xf32>, memref<2x8xf32>, memref<2xf32>, memref<2xf32>)
  sparsek.score_grad ins(%x, %w, %du : memref<1x?x8xf32>, memref<2x8xf32>, memref<1x2x?xf32>)
      outs(%dx, %dw, %db, %ds : memref<1x?x8xf32>, memref<2x8xf32>, memref<2xf32>, memref<2xf32>)
  return
}

// A run-time size check left by a transformation.
// CHECK-LABEL: func.func @check_sizes
// CHECK-SAME: %[[A:[^:]*]]: index, %[[B:[^:]*]]: index
// CHECK: sparsek.check_sizes %[[A]], %[[B]]
func.func @check_sizes(%a: index, %b: index) {
  sparsek.check_sizes %a, %b
  return
}

// A dynamic list length K (checked at run time: min(k, S) <= K <= k).
// CHECK-LABEL: func.func @select_dynamic_list_length
// CHECK: sparsek.select ins(%{{.*}} : tensor<1x2x?xf32>) k = 8 w = 4 outs({{.*}} : tensor<1x2x?x?xi32>, tensor<1x2x?x?xf32>, tensor<1x2x?xf32>)
func.func @select_dynamic_list_length(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x?xi32>,
                                      %g: tensor<1x2x?x?xf32>, %t: tensor<1x2x?xf32>)
    -> (tensor<1x2x?x?xi32>, tensor<1x2x?x?xf32>, tensor<1x2x?xf32>) {
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4
      outs(%i, %g, %t : tensor<1x2x?x?xi32>, tensor<1x2x?x?xf32>, tensor<1x2x?xf32>)
      -> tensor<1x2x?x?xi32>, tensor<1x2x?x?xf32>, tensor<1x2x?xf32>
  return %idx, %gates, %tau : tensor<1x2x?x?xi32>, tensor<1x2x?x?xf32>, tensor<1x2x?xf32>
}
