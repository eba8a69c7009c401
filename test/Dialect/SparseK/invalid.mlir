// Every verifier diagnostic of every sparsek op, dynamic shapes included.
// RUN: sparsek-opt %s -split-input-file -verify-diagnostics
// RUN: %mlir-opt-sparsek %s -split-input-file -verify-diagnostics

func.func @score_input_rank(%x: tensor<16x64xbf16>, %w: tensor<4x64xbf16>, %o: tensor<2x4x16xf32>) {
  // expected-error@+1 {{'input' must have rank 3 [B, T, C], got 'tensor<16x64xbf16>'}}
  %u = sparsek.score ins(%x, %w : tensor<16x64xbf16>, tensor<4x64xbf16>) outs(%o : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  return
}

// -----

func.func @score_weight_rank(%x: tensor<2x16x64xbf16>, %w: tensor<4x64x1xbf16>, %o: tensor<2x4x16xf32>) {
  // expected-error@+1 {{'weight' must have rank 2 [Hkv, C], got 'tensor<4x64x1xbf16>'}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64x1xbf16>) outs(%o : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  return
}

// -----

func.func @score_init_rank(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xbf16>, %o: tensor<2x4xf32>) {
  // expected-error@+1 {{'init' must have rank 3 [B, Hkv, T], got 'tensor<2x4xf32>'}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xbf16>) outs(%o : tensor<2x4xf32>) -> tensor<2x4xf32>
  return
}

// -----

func.func @score_input_type(%x: tensor<2x16x64xi8>, %w: tensor<4x64xi8>, %o: tensor<2x4x16xf32>) {
  // expected-error@+1 {{'input' must have element type f16, bf16 or f32, got 'i8'}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xi8>, tensor<4x64xi8>) outs(%o : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  return
}

// -----

func.func @score_weight_type(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xf32>, %o: tensor<2x4x16xf32>) {
  // expected-error@+1 {{'weight' must have the element type of 'input' ('bf16'), got 'f32'}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xf32>) outs(%o : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  return
}

// -----

func.func @score_init_type(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xbf16>, %o: tensor<2x4x16xbf16>) {
  // expected-error@+1 {{'init' must have element type f32, got 'bf16'}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xbf16>) outs(%o : tensor<2x4x16xbf16>) -> tensor<2x4x16xbf16>
  return
}

// -----

func.func @score_channels_dynamic(%x: tensor<?x?x64xbf16>, %w: tensor<4x32xbf16>, %o: tensor<?x4x?xf32>) {
  // expected-error@+1 {{'weight' dimension 1 (C) is 32 but must equal 'input' dimension 2 (C) = 64}}
  %u = sparsek.score ins(%x, %w : tensor<?x?x64xbf16>, tensor<4x32xbf16>) outs(%o : tensor<?x4x?xf32>) -> tensor<?x4x?xf32>
  return
}

// -----

func.func @score_batch(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xbf16>, %o: tensor<3x4x16xf32>) {
  // expected-error@+1 {{'init' dimension 0 (B) is 3 but must equal 'input' dimension 0 (B) = 2}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xbf16>) outs(%o : tensor<3x4x16xf32>) -> tensor<3x4x16xf32>
  return
}

// -----

func.func @score_tokens(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xbf16>, %o: tensor<2x4x8xf32>) {
  // expected-error@+1 {{'init' dimension 2 (T) is 8 but must equal 'input' dimension 1 (T) = 16}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xbf16>) outs(%o : tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----

func.func @score_heads(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xbf16>, %o: tensor<2x8x16xf32>) {
  // expected-error@+1 {{'init' dimension 1 (Hkv) is 8 but must equal 'weight' dimension 0 (Hkv) = 4}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xbf16>) outs(%o : tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
  return
}

// -----

func.func @score_bias_rank(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xbf16>, %o: tensor<2x4x16xf32>, %b: tensor<4x1xf32>) {
  // expected-error@+1 {{'bias' must have rank 1 [Hkv], got 'tensor<4x1xf32>'}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xbf16>) bias(%b : tensor<4x1xf32>) outs(%o : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  return
}

// -----

func.func @score_bias_type(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xbf16>, %o: tensor<2x4x16xf32>, %b: tensor<4xbf16>) {
  // expected-error@+1 {{'bias' must have element type f32, got 'bf16'}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xbf16>) bias(%b : tensor<4xbf16>) outs(%o : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  return
}

// -----

func.func @score_slope_heads(%x: tensor<2x16x64xbf16>, %w: tensor<4x64xbf16>, %o: tensor<2x4x16xf32>, %s: tensor<8xf32>) {
  // expected-error@+1 {{'slope' dimension 0 (Hkv) is 8 but must equal 'weight' dimension 0 (Hkv) = 4}}
  %u = sparsek.score ins(%x, %w : tensor<2x16x64xbf16>, tensor<4x64xbf16>) slope(%s : tensor<8xf32>) outs(%o : tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  return
}

// -----

func.func @mask_negative_k(%z: tensor<4x?xf32>, %p: tensor<4x?xf32>, %t: tensor<4xf32>) {
  // expected-error@+1 {{budget k must be >= 0, got -1}}
  %m, %tau = sparsek.mask ins(%z : tensor<4x?xf32>) k = -1 outs(%p, %t : tensor<4x?xf32>, tensor<4xf32>) -> tensor<4x?xf32>, tensor<4xf32>
  return
}

// -----

func.func @mask_scalar_input(%z: tensor<f32>, %p: tensor<f32>, %t: tensor<f32>) {
  // expected-error@+1 {{'input' must have rank >= 1 (rows on the last axis), got 'tensor<f32>'}}
  %m, %tau = sparsek.mask ins(%z : tensor<f32>) k = 3 outs(%p, %t : tensor<f32>, tensor<f32>) -> tensor<f32>, tensor<f32>
  return
}

// -----

func.func @mask_mask_rank(%z: tensor<4x?xf32>, %p: tensor<?xf32>, %t: tensor<4xf32>) {
  // expected-error@+1 {{'mask_init' must have rank 2 [..., N], got 'tensor<?xf32>'}}
  %m, %tau = sparsek.mask ins(%z : tensor<4x?xf32>) k = 3 outs(%p, %t : tensor<?xf32>, tensor<4xf32>) -> tensor<?xf32>, tensor<4xf32>
  return
}

// -----

func.func @mask_tau_rank(%z: tensor<4x?xf32>, %p: tensor<4x?xf32>, %t: tensor<4x1xf32>) {
  // expected-error@+1 {{'tau_init' must have rank 1 [...], got 'tensor<4x1xf32>'}}
  %m, %tau = sparsek.mask ins(%z : tensor<4x?xf32>) k = 3 outs(%p, %t : tensor<4x?xf32>, tensor<4x1xf32>) -> tensor<4x?xf32>, tensor<4x1xf32>
  return
}

// -----

func.func @mask_input_type(%z: tensor<4x?xf16>, %p: tensor<4x?xf32>, %t: tensor<4xf32>) {
  // expected-error@+1 {{'input' must have element type f32, got 'f16'}}
  %m, %tau = sparsek.mask ins(%z : tensor<4x?xf16>) k = 3 outs(%p, %t : tensor<4x?xf32>, tensor<4xf32>) -> tensor<4x?xf32>, tensor<4xf32>
  return
}

// -----

func.func @mask_row_length(%z: tensor<4x8xf32>, %p: tensor<4x9xf32>, %t: tensor<4xf32>) {
  // expected-error@+1 {{'mask_init' dimension 1 (N) is 9 but must equal 'input' dimension 1 (N) = 8}}
  %m, %tau = sparsek.mask ins(%z : tensor<4x8xf32>) k = 3 outs(%p, %t : tensor<4x9xf32>, tensor<4xf32>) -> tensor<4x9xf32>, tensor<4xf32>
  return
}

// -----

func.func @mask_tau_rows_dynamic(%z: tensor<4x?xf32>, %p: tensor<4x?xf32>, %t: tensor<5xf32>) {
  // expected-error@+1 {{'tau_init' dimension 0 (batch 0) is 5 but must equal 'input' dimension 0 (batch 0) = 4}}
  %m, %tau = sparsek.mask ins(%z : tensor<4x?xf32>) k = 3 outs(%p, %t : tensor<4x?xf32>, tensor<5xf32>) -> tensor<4x?xf32>, tensor<5xf32>
  return
}

// -----

func.func @select_negative_k(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{budget k must be >= 0, got -2}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = -2 w = 4 outs(%i, %g, %t : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>) -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_negative_w(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{window w must be >= 0, got -1}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = -1 outs(%i, %g, %t : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>) -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_nothing_to_attend(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x0xi32>, %g: tensor<1x2x?x0xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{k = 0 with w = 0 leaves no key to attend to; give a positive budget k or window w}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 0 w = 0 outs(%i, %g, %t : tensor<1x2x?x0xi32>, tensor<1x2x?x0xf32>, tensor<1x2x?xf32>) -> tensor<1x2x?x0xi32>, tensor<1x2x?x0xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_scores_rank(%u: tensor<2x?xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{'scores' must have rank 3 [B, Hkv, S], got 'tensor<2x?xf32>'}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>) -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_indices_rank(%u: tensor<1x2x?xf32>, %i: tensor<1x2x8xi32>, %g: tensor<1x2x?x8xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{'indices_init' must have rank 4 [B, Hkv, T, k], got 'tensor<1x2x8xi32>'}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>) -> tensor<1x2x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_gates_rank(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<2x?x8xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{'gates_init' must have rank 4 [B, Hkv, T, k], got 'tensor<2x?x8xf32>'}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x?x8xi32>, tensor<2x?x8xf32>, tensor<1x2x?xf32>) -> tensor<1x2x?x8xi32>, tensor<2x?x8xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_tau_rank(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %t: tensor<1x2xf32>) {
  // expected-error@+1 {{'tau_init' must have rank 3 [B, Hkv, T], got 'tensor<1x2xf32>'}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2xf32>) -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2xf32>
  return
}

// -----

func.func @select_scores_type(%u: tensor<1x2x?xbf16>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{'scores' must have element type f32, got 'bf16'}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xbf16>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>) -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_indices_type(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x8xi16>, %g: tensor<1x2x?x8xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{'indices_init' must have element type i32 or i64, got 'i16'}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x?x8xi16>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>) -> tensor<1x2x?x8xi16>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_gates_type(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf16>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{'gates_init' must have element type f32, got 'f16'}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf16>, tensor<1x2x?xf32>) -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf16>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_budget_dim(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{'indices_init' dimension 3 (K) must equal the budget k = 8 when static (a dynamic K is checked at run time), got 4}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>, tensor<1x2x?xf32>) -> tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_gates_queries(%u: tensor<1x2x?xf32>, %i: tensor<1x2x16x8xi32>, %g: tensor<1x2x12x8xf32>, %t: tensor<1x2x?xf32>) {
  // expected-error@+1 {{'gates_init' dimension 2 (T) is 12 but must equal 'indices_init' dimension 2 (T) = 16}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x16x8xi32>, tensor<1x2x12x8xf32>, tensor<1x2x?xf32>) -> tensor<1x2x16x8xi32>, tensor<1x2x12x8xf32>, tensor<1x2x?xf32>
  return
}

// -----

func.func @select_heads(%u: tensor<1x2x?xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %t: tensor<1x3x?xf32>) {
  // expected-error@+1 {{'tau_init' dimension 1 (Hkv) is 3 but must equal 'scores' dimension 1 (Hkv) = 2}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x3x?xf32>) -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x3x?xf32>
  return
}

// -----

func.func @select_more_queries_than_keys(%u: tensor<1x2x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %t: tensor<1x2x16xf32>) {
  // expected-error@+1 {{the 16 queries of 'tau_init' must be the last of the 8 positions of 'scores' (T <= S)}}
  %idx, %gates, %tau = sparsek.select ins(%u : tensor<1x2x8xf32>) k = 8 w = 4 outs(%i, %g, %t : tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x16xf32>) -> tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x16xf32>
  return
}

// -----

func.func @attention_query_rank(%q: tensor<4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'query' must have rank 4 [B, Hq, T, D], got 'tensor<4x?x16xf32>'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_key_rank(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'key' must have rank 4 [B, Hkv, S, D], got 'tensor<1x2x?xf32>'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_value_rank(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'value' must have rank 4 [B, Hkv, S, Dv], got 'tensor<2x?x8xf32>'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_indices_rank(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'indices' must have rank 4 [B, Hkv, T, K], got 'tensor<1x2x4xi32>'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_gates_rank(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4x1xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'gates' must have rank 4 [B, Hkv, T, K], got 'tensor<1x2x?x4x1xf32>'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4x1xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_init_rank(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x8xf32>) {
  // expected-error@+1 {{'init' must have rank 4 [B, Hq, T, Dv], got 'tensor<1x4x8xf32>'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  return
}

// -----

func.func @attention_negative_w(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{window w must be >= 0, got -3}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = -3 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_nothing_to_attend(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x0xi32>, %g: tensor<1x2x?x0xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{k = 0 with w = 0 leaves no key to attend to; give a positive budget k or window w}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x0xi32>, tensor<1x2x?x0xf32>) w = 0 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_scale(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{scale must be a finite positive number, got -1}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 scale = -1.0 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_query_type(%q: tensor<1x4x?x16xi8>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'query' must have element type f16, bf16 or f32, got 'i8'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xi8>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_key_type(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xbf16>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'key' must have the element type of 'query' ('f32'), got 'bf16'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xbf16>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_value_type(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf16>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'value' must have the element type of 'query' ('f32'), got 'f16'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf16>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_init_type(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xbf16>) {
  // expected-error@+1 {{'init' must have the element type of 'value' ('f32'), got 'bf16'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xbf16>) -> tensor<1x4x?x8xbf16>
  return
}

// -----

func.func @attention_batch(%q: tensor<1x4x?x16xf32>, %k: tensor<2x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'key' dimension 0 (B) is 2 but must equal 'query' dimension 0 (B) = 1}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<2x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_kv_heads(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x1x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'value' dimension 1 (Hkv) is 1 but must equal 'key' dimension 1 (Hkv) = 2}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x1x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_head_dim(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x32xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'key' dimension 3 (D) is 32 but must equal 'query' dimension 3 (D) = 16}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x32xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_value_dim(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x16xf32>) {
  // expected-error@+1 {{'init' dimension 3 (Dv) is 16 but must equal 'value' dimension 3 (Dv) = 8}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32>
  return
}

// -----

func.func @attention_sequence(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x32x16xf32>, %v: tensor<1x2x24x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'value' dimension 2 (S) is 24 but must equal 'key' dimension 2 (S) = 32}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x32x16xf32>, tensor<1x2x24x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_output_queries(%q: tensor<1x4x8x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x6x8xf32>) {
  // expected-error@+1 {{'init' dimension 2 (T) is 6 but must equal 'query' dimension 2 (T) = 8}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x8x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x6x8xf32>) -> tensor<1x4x6x8xf32>
  return
}

// -----

func.func @attention_head_ratio(%q: tensor<1x3x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x3x?x8xf32>) {
  // expected-error@+1 {{query heads Hq = 3 ('query' dimension 1) must be a positive multiple of KV heads Hkv = 2 ('key' dimension 1)}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x3x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x3x?x8xf32>) -> tensor<1x3x?x8xf32>
  return
}

// -----

func.func @attention_indices_type(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xf32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'indices' must have element type i32 or i64, got 'f32'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_gates_type(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xbf16>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'gates' must have element type f32, got 'bf16'}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xbf16>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_indices_queries(%q: tensor<1x4x8x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x7x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x8x8xf32>) {
  // expected-error@+1 {{'indices' dimension 2 (T) is 7 but must equal 'query' dimension 2 (T) = 8}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x8x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x7x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  return
}

// -----

func.func @attention_gates_budget(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x5xf32>, %o: tensor<1x4x?x8xf32>) {
  // expected-error@+1 {{'gates' dimension 3 (K) is 5 but must equal 'indices' dimension 3 (K) = 4}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x5xf32>) w = 2 outs(%o : tensor<1x4x?x8xf32>) -> tensor<1x4x?x8xf32>
  return
}

// -----

func.func @attention_more_queries_than_keys(%q: tensor<1x4x8x16xf32>, %k: tensor<1x2x4x16xf32>, %v: tensor<1x2x4x8xf32>, %i: tensor<1x2x?x4xi32>, %g: tensor<1x2x?x4xf32>, %o: tensor<1x4x8x8xf32>) {
  // expected-error@+1 {{the 8 queries of 'query' must be the last of the 4 positions of 'key' (T <= S)}}
  %r = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<1x4x8x16xf32>, tensor<1x2x4x16xf32>, tensor<1x2x4x8xf32>, tensor<1x2x?x4xi32>, tensor<1x2x?x4xf32>) w = 2 outs(%o : tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  return
}

// -----

func.func @select_attention_negative_k(%q: tensor<?x4x?x16xbf16>, %k: tensor<?x2x?x16xbf16>, %v: tensor<?x2x?x16xbf16>, %u: tensor<?x2x?xf32>, %o: tensor<?x4x?x16xbf16>) {
  // expected-error@+1 {{budget k must be >= 0, got -1}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?xf32>) k = -1 w = 2 outs(%o : tensor<?x4x?x16xbf16>) -> tensor<?x4x?x16xbf16>
  return
}

// -----

func.func @select_attention_nothing_to_attend(%q: tensor<?x4x?x16xbf16>, %k: tensor<?x2x?x16xbf16>, %v: tensor<?x2x?x16xbf16>, %u: tensor<?x2x?xf32>, %o: tensor<?x4x?x16xbf16>) {
  // expected-error@+1 {{k = 0 with w = 0 leaves no key to attend to; give a positive budget k or window w}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?xf32>) k = 0 w = 0 outs(%o : tensor<?x4x?x16xbf16>) -> tensor<?x4x?x16xbf16>
  return
}

// -----

func.func @select_attention_scale(%q: tensor<?x4x?x16xbf16>, %k: tensor<?x2x?x16xbf16>, %v: tensor<?x2x?x16xbf16>, %u: tensor<?x2x?xf32>, %o: tensor<?x4x?x16xbf16>) {
  // expected-error@+1 {{scale must be a finite positive number, got inf}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?xf32>) k = 8 w = 2 scale = 0x7F800000 outs(%o : tensor<?x4x?x16xbf16>) -> tensor<?x4x?x16xbf16>
  return
}

// -----

func.func @select_attention_scores_rank(%q: tensor<?x4x?x16xbf16>, %k: tensor<?x2x?x16xbf16>, %v: tensor<?x2x?x16xbf16>, %u: tensor<?x2x?x1xf32>, %o: tensor<?x4x?x16xbf16>) {
  // expected-error@+1 {{'scores' must have rank 3 [B, Hkv, S], got 'tensor<?x2x?x1xf32>'}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?x1xf32>) k = 8 w = 2 outs(%o : tensor<?x4x?x16xbf16>) -> tensor<?x4x?x16xbf16>
  return
}

// -----

func.func @select_attention_scores_type(%q: tensor<?x4x?x16xbf16>, %k: tensor<?x2x?x16xbf16>, %v: tensor<?x2x?x16xbf16>, %u: tensor<?x2x?xbf16>, %o: tensor<?x4x?x16xbf16>) {
  // expected-error@+1 {{'scores' must have element type f32, got 'bf16'}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?xbf16>) k = 8 w = 2 outs(%o : tensor<?x4x?x16xbf16>) -> tensor<?x4x?x16xbf16>
  return
}

// -----

func.func @select_attention_scores_heads(%q: tensor<?x4x?x16xbf16>, %k: tensor<?x2x?x16xbf16>, %v: tensor<?x2x?x16xbf16>, %u: tensor<?x4x?xf32>, %o: tensor<?x4x?x16xbf16>) {
  // expected-error@+1 {{'scores' dimension 1 (Hkv) is 4 but must equal 'key' dimension 1 (Hkv) = 2}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x4x?xf32>) k = 8 w = 2 outs(%o : tensor<?x4x?x16xbf16>) -> tensor<?x4x?x16xbf16>
  return
}

// -----

func.func @select_attention_scores_length(%q: tensor<?x4x?x16xbf16>, %k: tensor<?x2x64x16xbf16>, %v: tensor<?x2x64x16xbf16>, %u: tensor<?x2x63xf32>, %o: tensor<?x4x?x16xbf16>) {
  // expected-error@+1 {{'scores' dimension 2 (S) is 63 but must equal 'key' dimension 2 (S) = 64}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x?x16xbf16>, tensor<?x2x64x16xbf16>, tensor<?x2x64x16xbf16>, tensor<?x2x63xf32>) k = 8 w = 2 outs(%o : tensor<?x4x?x16xbf16>) -> tensor<?x4x?x16xbf16>
  return
}

// -----

func.func @select_attention_head_ratio(%q: tensor<?x5x?x16xbf16>, %k: tensor<?x2x?x16xbf16>, %v: tensor<?x2x?x16xbf16>, %u: tensor<?x2x?xf32>, %o: tensor<?x5x?x16xbf16>) {
  // expected-error@+1 {{query heads Hq = 5 ('query' dimension 1) must be a positive multiple of KV heads Hkv = 2 ('key' dimension 1)}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x5x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?xf32>) k = 8 w = 2 outs(%o : tensor<?x5x?x16xbf16>) -> tensor<?x5x?x16xbf16>
  return
}

// -----

func.func @select_attention_key_type(%q: tensor<?x4x?x16xbf16>, %k: tensor<?x2x?x16xf16>, %v: tensor<?x2x?x16xbf16>, %u: tensor<?x2x?xf32>, %o: tensor<?x4x?x16xbf16>) {
  // expected-error@+1 {{'key' must have the element type of 'query' ('bf16'), got 'f16'}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x?x16xbf16>, tensor<?x2x?x16xf16>, tensor<?x2x?x16xbf16>, tensor<?x2x?xf32>) k = 8 w = 2 outs(%o : tensor<?x4x?x16xbf16>) -> tensor<?x4x?x16xbf16>
  return
}

// -----

func.func @select_attention_more_queries_than_keys(%q: tensor<?x4x9x16xbf16>, %k: tensor<?x2x8x16xbf16>, %v: tensor<?x2x8x16xbf16>, %u: tensor<?x2x?xf32>, %o: tensor<?x4x9x16xbf16>) {
  // expected-error@+1 {{the 9 queries of 'query' must be the last of the 8 positions of 'key' (T <= S)}}
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<?x4x9x16xbf16>, tensor<?x2x8x16xbf16>, tensor<?x2x8x16xbf16>, tensor<?x2x?xf32>) k = 8 w = 2 outs(%o : tensor<?x4x9x16xbf16>) -> tensor<?x4x9x16xbf16>
  return
}

// -----

func.func @decode_negative_w(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{window w must be >= 0, got -4}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = -4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_nothing_to_attend(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{k = 0 with w = 0 leaves no key to attend to; give a positive budget k or window w}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 0 w = 0 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_scale(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{scale must be a finite positive number, got 0}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 scale = 0.0 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_query_rank(%q: tensor<?x4x1x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'query' must have rank 3 [B, Hq, D], got 'tensor<?x4x1x16xf16>'}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x1x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_key_slots_rank(%q: tensor<?x4x16xf16>, %kc: tensor<?x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'key_slots' must have rank 4 [B, Hkv, k + w, D], got 'tensor<?x12x16xf16>'}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_slot_scores_rank(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12x1xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'slot_scores' must have rank 3 [B, Hkv, k + w], got 'tensor<?x2x12x1xf32>'}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12x1xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_tau_rank(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'tau' must have rank 2 [B, Hkv], got 'tensor<?xf32>'}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_positions_rank(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?x1xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'positions' must have rank 1 [B], got 'tensor<?x1xi64>'}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x1xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_slots(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x10x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'key_slots' dimension 2 (slots) must be static and equal k + w = 12, got 10}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x10x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_slots_dynamic(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x?x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'key_slots' dimension 2 (slots) must be static and equal k + w = 12, got ?}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x?x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_value_slots(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x11x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'value_slots' dimension 2 (slots) is 11 but must equal 'key_slots' dimension 2 (slots) = 12}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x11x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_head_dim(%q: tensor<?x4x32xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'key_slots' dimension 3 (D) is 16 but must equal 'query' dimension 2 (D) = 32}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x32xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_head_ratio(%q: tensor<?x4x16xf16>, %kc: tensor<?x3x12x16xf16>, %vc: tensor<?x3x12x8xf16>, %sc: tensor<?x3x12xf32>, %tau: tensor<?x3xf32>, %cnt: tensor<?x3xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{query heads Hq = 4 ('query' dimension 1) must be a positive multiple of KV heads Hkv = 3 ('key_slots' dimension 1)}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x3x12x16xf16>, tensor<?x3x12x8xf16>, tensor<?x3x12xf32>, tensor<?x3xf32>, tensor<?x3xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_slot_scores_type(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf16>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'slot_scores' must have element type f32, got 'f16'}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf16>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_pool_count_type(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi64>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'pool_count' must have element type i32, got 'i64'}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi64>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_positions_type(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi32>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'positions' must have element type i64, got 'i32'}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xi32>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @decode_batch(%q: tensor<3x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x2xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<2xi64>, %o: tensor<3x4x8xf16>) {
  // expected-error@+1 {{'positions' dimension 0 (B) is 2 but must equal 'query' dimension 0 (B) = 3}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<3x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<2xi64>) k = 8 w = 4 outs(%o : tensor<3x4x8xf16>) -> tensor<3x4x8xf16>
  return
}

// -----

func.func @decode_tau_heads(%q: tensor<?x4x16xf16>, %kc: tensor<?x2x12x16xf16>, %vc: tensor<?x2x12x8xf16>, %sc: tensor<?x2x12xf32>, %tau: tensor<?x4xf32>, %cnt: tensor<?x2xi32>, %pos: tensor<?xi64>, %o: tensor<?x4x8xf16>) {
  // expected-error@+1 {{'tau' dimension 1 (Hkv) is 4 but must equal 'key_slots' dimension 1 (Hkv) = 2}}
  %r = sparsek.decode_attention ins(%q, %kc, %vc, %sc, %tau, %cnt, %pos : tensor<?x4x16xf16>, tensor<?x2x12x16xf16>, tensor<?x2x12x8xf16>, tensor<?x2x12xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?xi64>) k = 8 w = 4 outs(%o : tensor<?x4x8xf16>) -> tensor<?x4x8xf16>
  return
}

// -----

func.func @mixed_forms(%u: tensor<1x2x?xf32>, %i: memref<1x2x?x8xi32>, %g: memref<1x2x?x8xf32>, %t: memref<1x2x?xf32>) {
  // expected-error@+1 {{operands must be all ranked tensors (tensor form) or all memrefs (buffer form)}}
  sparsek.select ins(%u : tensor<1x2x?xf32>) k = 8 w = 4 outs(%i, %g, %t : memref<1x2x?x8xi32>, memref<1x2x?x8xf32>, memref<1x2x?xf32>)
  return
}

// -----

func.func @buffer_form_with_result(%z: memref<4xf32>, %p: memref<4xf32>, %t: memref<f32>) {
  // expected-error@+1 {{expected the number of tensor results (2) to be equal to the number of output tensors (0)}}
  %r:2 = sparsek.mask ins(%z : memref<4xf32>) k = 3 outs(%p, %t : memref<4xf32>, memref<f32>) -> tensor<4xf32>, tensor<f32>
  return
}

// -----

func.func @attention_grad_dq_type(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xbf16>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %dg: tensor<1x2x?x8xf32>) {
  // expected-error@+1 {{'grad_query_init' must have element type f32, got 'bf16'}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x4x?x8xf32>) w = 4 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xbf16>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>) -> tensor<1x4x?x16xbf16>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>
  return
}

// -----

func.func @attention_grad_dkey_size(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x10x16xf32>, %dv: tensor<1x2x12x8xf32>, %dg: tensor<1x2x?x8xf32>) {
  // expected-error@+1 {{'grad_key_init' dimension 2 (S) is 10 but must equal 'key' dimension 2 (S) = 12}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x4x?x8xf32>) w = 4 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xf32>, tensor<1x2x10x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x10x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>
  return
}

// -----

func.func @attention_grad_dvalue_rank(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<2x12x8xf32>, %dg: tensor<1x2x?x8xf32>) {
  // expected-error@+1 {{'grad_value_init' must have rank 4 [B, Hkv, S, Dv], got 'tensor<2x12x8xf32>'}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x4x?x8xf32>) w = 4 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<2x12x8xf32>, tensor<1x2x?x8xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<2x12x8xf32>, tensor<1x2x?x8xf32>
  return
}

// -----

func.func @attention_grad_do_type(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %do: tensor<1x4x?x8xf16>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %dg: tensor<1x2x?x8xf32>) {
  // expected-error@+1 {{'grad_output' must have the element type of 'value' ('f32'), got 'f16'}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x4x?x8xf16>) w = 4 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>
  return
}

// -----

func.func @attention_grad_do_heads(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %do: tensor<1x2x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %dg: tensor<1x2x?x8xf32>) {
  // expected-error@+1 {{'grad_output' dimension 1 (Hq) is 2 but must equal 'query' dimension 1 (Hq) = 4}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x2x?x8xf32>) w = 4 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>
  return
}

// -----

func.func @attention_grad_dgates_budget(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %dg: tensor<1x2x?x4xf32>) {
  // expected-error@+1 {{'grad_gates_init' dimension 3 (K) is 4 but must equal 'indices' dimension 3 (K) = 8}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x4x?x8xf32>) w = 4 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x4xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x4xf32>
  return
}

// -----

func.func @attention_grad_dgates_type(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %dg: tensor<1x2x?x8xf16>) {
  // expected-error@+1 {{'grad_gates_init' must have element type f32, got 'f16'}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x4x?x8xf32>) w = 4 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf16>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf16>
  return
}

// -----

func.func @attention_grad_nothing(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x0xi32>, %g: tensor<1x2x?x0xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %dg: tensor<1x2x?x0xf32>) {
  // expected-error@+1 {{k = 0 with w = 0 leaves no key to attend to}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x0xi32>, tensor<1x2x?x0xf32>, tensor<1x4x?x8xf32>) w = 0 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x0xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x0xf32>
  return
}

// -----

func.func @attention_grad_scale(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %dg: tensor<1x2x?x8xf32>) {
  // expected-error@+1 {{scale must be a finite positive number, got -1}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x4x?x8xf32>) w = 4 scale = -1.0 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>
  return
}

// -----

func.func @attention_grad_queries(%q: tensor<1x4x13x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %i: tensor<1x2x?x8xi32>, %g: tensor<1x2x?x8xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %dg: tensor<1x2x?x8xf32>) {
  // expected-error@+1 {{the 13 queries of 'query' must be the last of the 12 positions of 'key' (T <= S)}}
  %r:4 = sparsek.attention_grad ins(%q, %k, %v, %i, %g, %do : tensor<1x4x13x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?x8xf32>, tensor<1x4x?x8xf32>) w = 4 outs(%dq, %dk, %dv, %dg : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x?x8xf32>
  return
}

// -----

func.func @select_grad_tau_type(%u: tensor<1x2x12xf32>, %i: tensor<1x2x?x8xi32>, %t: tensor<1x2x?xf16>, %dg: tensor<1x2x?x8xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{'tau' must have element type f32, got 'f16'}}
  %r = sparsek.select_grad ins(%u, %i, %t, %dg : tensor<1x2x12xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?xf16>, tensor<1x2x?x8xf32>) w = 4 outs(%du : tensor<1x2x12xf32>) -> tensor<1x2x12xf32>
  return
}

// -----

func.func @select_grad_init_size(%u: tensor<1x2x12xf32>, %i: tensor<1x2x?x8xi32>, %t: tensor<1x2x?xf32>, %dg: tensor<1x2x?x8xf32>, %du: tensor<1x2x10xf32>) {
  // expected-error@+1 {{'init' dimension 2 (S) is 10 but must equal 'scores' dimension 2 (S) = 12}}
  %r = sparsek.select_grad ins(%u, %i, %t, %dg : tensor<1x2x12xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?xf32>, tensor<1x2x?x8xf32>) w = 4 outs(%du : tensor<1x2x10xf32>) -> tensor<1x2x10xf32>
  return
}

// -----

func.func @select_grad_indices_type(%u: tensor<1x2x12xf32>, %i: tensor<1x2x?x8xf32>, %t: tensor<1x2x?xf32>, %dg: tensor<1x2x?x8xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{'indices' must have element type i32 or i64, got 'f32'}}
  %r = sparsek.select_grad ins(%u, %i, %t, %dg : tensor<1x2x12xf32>, tensor<1x2x?x8xf32>, tensor<1x2x?xf32>, tensor<1x2x?x8xf32>) w = 4 outs(%du : tensor<1x2x12xf32>) -> tensor<1x2x12xf32>
  return
}

// -----

func.func @select_grad_dgates_size(%u: tensor<1x2x12xf32>, %i: tensor<1x2x?x8xi32>, %t: tensor<1x2x?xf32>, %dg: tensor<1x2x?x4xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{'grad_gates' dimension 3 (K) is 4 but must equal 'indices' dimension 3 (K) = 8}}
  %r = sparsek.select_grad ins(%u, %i, %t, %dg : tensor<1x2x12xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?xf32>, tensor<1x2x?x4xf32>) w = 4 outs(%du : tensor<1x2x12xf32>) -> tensor<1x2x12xf32>
  return
}

// -----

func.func @select_grad_window(%u: tensor<1x2x12xf32>, %i: tensor<1x2x?x8xi32>, %t: tensor<1x2x?xf32>, %dg: tensor<1x2x?x8xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{window w must be >= 0, got -1}}
  %r = sparsek.select_grad ins(%u, %i, %t, %dg : tensor<1x2x12xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?xf32>, tensor<1x2x?x8xf32>) w = -1 outs(%du : tensor<1x2x12xf32>) -> tensor<1x2x12xf32>
  return
}

// -----

func.func @select_grad_rank(%u: tensor<2x12xf32>, %i: tensor<1x2x?x8xi32>, %t: tensor<1x2x?xf32>, %dg: tensor<1x2x?x8xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{'scores' must have rank 3 [B, Hkv, S], got 'tensor<2x12xf32>'}}
  %r = sparsek.select_grad ins(%u, %i, %t, %dg : tensor<2x12xf32>, tensor<1x2x?x8xi32>, tensor<1x2x?xf32>, tensor<1x2x?x8xf32>) w = 4 outs(%du : tensor<1x2x12xf32>) -> tensor<1x2x12xf32>
  return
}

// -----

func.func @select_grad_queries(%u: tensor<1x2x12xf32>, %i: tensor<1x2x?x8xi32>, %t: tensor<1x2x13xf32>, %dg: tensor<1x2x?x8xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{the 13 queries of 'tau' must be the last of the 12 positions of 'scores' (T <= S)}}
  %r = sparsek.select_grad ins(%u, %i, %t, %dg : tensor<1x2x12xf32>, tensor<1x2x?x8xi32>, tensor<1x2x13xf32>, tensor<1x2x?x8xf32>) w = 4 outs(%du : tensor<1x2x12xf32>) -> tensor<1x2x12xf32>
  return
}

// -----

func.func @select_attention_grad_dscores_size(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %u: tensor<1x2x12xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %du: tensor<1x2x10xf32>) {
  // expected-error@+1 {{'grad_scores_init' dimension 2 (S) is 10 but must equal 'key' dimension 2 (S) = 12}}
  %r:4 = sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>, tensor<1x4x?x8xf32>) k = 8 w = 4 outs(%dq, %dk, %dv, %du : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x10xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x10xf32>
  return
}

// -----

func.func @select_attention_grad_dscores_type(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %u: tensor<1x2x12xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %du: tensor<1x2x12xf16>) {
  // expected-error@+1 {{'grad_scores_init' must have element type f32, got 'f16'}}
  %r:4 = sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>, tensor<1x4x?x8xf32>) k = 8 w = 4 outs(%dq, %dk, %dv, %du : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf16>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf16>
  return
}

// -----

func.func @select_attention_grad_dvalue_size(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %u: tensor<1x2x12xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x4xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{'grad_value_init' dimension 3 (Dv) is 4 but must equal 'value' dimension 3 (Dv) = 8}}
  %r:4 = sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>, tensor<1x4x?x8xf32>) k = 8 w = 4 outs(%dq, %dk, %dv, %du : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x4xf32>, tensor<1x2x12xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x4xf32>, tensor<1x2x12xf32>
  return
}

// -----

func.func @select_attention_grad_dq_size(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %u: tensor<1x2x12xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x8xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{'grad_query_init' dimension 3 (D) is 8 but must equal 'query' dimension 3 (D) = 16}}
  %r:4 = sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>, tensor<1x4x?x8xf32>) k = 8 w = 4 outs(%dq, %dk, %dv, %du : tensor<1x4x?x8xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>) -> tensor<1x4x?x8xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>
  return
}

// -----

func.func @select_attention_grad_budget(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %u: tensor<1x2x12xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{budget k must be >= 0, got -2}}
  %r:4 = sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>, tensor<1x4x?x8xf32>) k = -2 w = 4 outs(%dq, %dk, %dv, %du : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>
  return
}

// -----

func.func @select_attention_grad_scale(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %u: tensor<1x2x12xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{scale must be a finite positive number, got 0}}
  %r:4 = sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>, tensor<1x4x?x8xf32>) k = 8 w = 4 scale = 0.0 outs(%dq, %dk, %dv, %du : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>
  return
}

// -----

func.func @select_attention_grad_queries(%q: tensor<1x4x13x16xf32>, %k: tensor<1x2x12x16xf32>, %v: tensor<1x2x12x8xf32>, %u: tensor<1x2x12xf32>, %do: tensor<1x4x?x8xf32>, %dq: tensor<1x4x?x16xf32>, %dk: tensor<1x2x12x16xf32>, %dv: tensor<1x2x12x8xf32>, %du: tensor<1x2x12xf32>) {
  // expected-error@+1 {{the 13 queries of 'query' must be the last of the 12 positions of 'key' (T <= S)}}
  %r:4 = sparsek.select_attention_grad ins(%q, %k, %v, %u, %do : tensor<1x4x13x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>, tensor<1x4x?x8xf32>) k = 8 w = 4 outs(%dq, %dk, %dv, %du : tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>) -> tensor<1x4x?x16xf32>, tensor<1x2x12x16xf32>, tensor<1x2x12x8xf32>, tensor<1x2x12xf32>
  return
}

// -----

func.func @score_grad_dbias_size(%x: tensor<2x?x8xf32>, %w: tensor<4x8xf32>, %du: tensor<2x4x?xf32>, %dx: tensor<2x?x8xf32>, %dw: tensor<4x8xf32>, %db: tensor<2xf32>, %ds: tensor<4xf32>) {
  // expected-error@+1 {{'grad_bias_init' dimension 0 (Hkv) is 2 but must equal 'weight' dimension 0 (Hkv) = 4}}
  %r:4 = sparsek.score_grad ins(%x, %w, %du : tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<2x4x?xf32>) outs(%dx, %dw, %db, %ds : tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4xf32>) -> tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<2xf32>, tensor<4xf32>
  return
}

// -----

func.func @score_grad_dx_type(%x: tensor<2x?x8xf32>, %w: tensor<4x8xf32>, %du: tensor<2x4x?xf32>, %dx: tensor<2x?x8xf16>, %dw: tensor<4x8xf32>, %db: tensor<4xf32>, %ds: tensor<4xf32>) {
  // expected-error@+1 {{'grad_input_init' must have element type f32, got 'f16'}}
  %r:4 = sparsek.score_grad ins(%x, %w, %du : tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<2x4x?xf32>) outs(%dx, %dw, %db, %ds : tensor<2x?x8xf16>, tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x?x8xf16>, tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>
  return
}

// -----

func.func @score_grad_weight_type(%x: tensor<2x?x8xf32>, %w: tensor<4x8xf16>, %du: tensor<2x4x?xf32>, %dx: tensor<2x?x8xf32>, %dw: tensor<4x8xf32>, %db: tensor<4xf32>, %ds: tensor<4xf32>) {
  // expected-error@+1 {{'weight' must have the element type of 'input' ('f32'), got 'f16'}}
  %r:4 = sparsek.score_grad ins(%x, %w, %du : tensor<2x?x8xf32>, tensor<4x8xf16>, tensor<2x4x?xf32>) outs(%dx, %dw, %db, %ds : tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>
  return
}

// -----

func.func @score_grad_du_rank(%x: tensor<2x?x8xf32>, %w: tensor<4x8xf32>, %du: tensor<4x?xf32>, %dx: tensor<2x?x8xf32>, %dw: tensor<4x8xf32>, %db: tensor<4xf32>, %ds: tensor<4xf32>) {
  // expected-error@+1 {{'grad_scores' must have rank 3 [B, Hkv, T], got 'tensor<4x?xf32>'}}
  %r:4 = sparsek.score_grad ins(%x, %w, %du : tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<4x?xf32>) outs(%dx, %dw, %db, %ds : tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>
  return
}

// -----

func.func @score_grad_dslope_rank(%x: tensor<2x?x8xf32>, %w: tensor<4x8xf32>, %du: tensor<2x4x?xf32>, %dx: tensor<2x?x8xf32>, %dw: tensor<4x8xf32>, %db: tensor<4xf32>, %ds: tensor<4x1xf32>) {
  // expected-error@+1 {{'grad_slope_init' must have rank 1 [Hkv], got 'tensor<4x1xf32>'}}
  %r:4 = sparsek.score_grad ins(%x, %w, %du : tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<2x4x?xf32>) outs(%dx, %dw, %db, %ds : tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4x1xf32>) -> tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4x1xf32>
  return
}

// -----

func.func @score_grad_input_type(%x: tensor<2x?x8xi32>, %w: tensor<4x8xf32>, %du: tensor<2x4x?xf32>, %dx: tensor<2x?x8xf32>, %dw: tensor<4x8xf32>, %db: tensor<4xf32>, %ds: tensor<4xf32>) {
  // expected-error@+1 {{'input' must have element type f16, bf16 or f32, got 'i32'}}
  %r:4 = sparsek.score_grad ins(%x, %w, %du : tensor<2x?x8xi32>, tensor<4x8xf32>, tensor<2x4x?xf32>) outs(%dx, %dw, %db, %ds : tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x?x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>
  return
}

// -----

func.func @mask_grad_rank(%z: tensor<f32>, %t: tensor<f32>, %dp: tensor<f32>, %dz: tensor<f32>) {
  // expected-error@+1 {{'input' must have rank >= 1 (rows on the last axis), got 'tensor<f32>'}}
  %r = sparsek.mask_grad ins(%z, %t, %dp : tensor<f32>, tensor<f32>, tensor<f32>) outs(%dz : tensor<f32>) -> tensor<f32>
  return
}

// -----

func.func @mask_grad_tau_rank(%z: tensor<4x?xf32>, %t: tensor<4x1xf32>, %dp: tensor<4x?xf32>, %dz: tensor<4x?xf32>) {
  // expected-error@+1 {{'tau' must have rank 1 [...], got 'tensor<4x1xf32>'}}
  %r = sparsek.mask_grad ins(%z, %t, %dp : tensor<4x?xf32>, tensor<4x1xf32>, tensor<4x?xf32>) outs(%dz : tensor<4x?xf32>) -> tensor<4x?xf32>
  return
}

// -----

func.func @mask_grad_size(%z: tensor<4x6xf32>, %t: tensor<4xf32>, %dp: tensor<4x5xf32>, %dz: tensor<4x6xf32>) {
  // expected-error@+1 {{'grad_mask' dimension 1 (N) is 5 but must equal 'input' dimension 1 (N) = 6}}
  %r = sparsek.mask_grad ins(%z, %t, %dp : tensor<4x6xf32>, tensor<4xf32>, tensor<4x5xf32>) outs(%dz : tensor<4x6xf32>) -> tensor<4x6xf32>
  return
}

// -----

func.func @mask_grad_type(%z: tensor<4x?xf32>, %t: tensor<4xf32>, %dp: tensor<4x?xf32>, %dz: tensor<4x?xbf16>) {
  // expected-error@+1 {{'init' must have element type f32, got 'bf16'}}
  %r = sparsek.mask_grad ins(%z, %t, %dp : tensor<4x?xf32>, tensor<4xf32>, tensor<4x?xf32>) outs(%dz : tensor<4x?xbf16>) -> tensor<4x?xbf16>
  return
}
