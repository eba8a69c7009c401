// A whole SparseK attention layer: q/k/v projections, the scoring network,
// selection + sparse attention over the top-k scored keys and a sliding
// window, and the output projection. Sequence length T is dynamic.
//
//   B = 1, C = 64, Hq = 4 query heads, Hkv = 2 KV heads (GQA, G = 2),
//   D = 16, k = 16 selected keys, w = 16 window.
//
// Verify and print:  sparsek-opt examples/sparsek_layer.mlir
// Compile for CPU:   sparsek-opt examples/sparsek_layer.mlir --sparsek-cpu-pipeline
// Run and check:     python3 examples/run_layer.py

// Projects [1, T, 64] hidden states to heads [1, H, T, 16] (H * 16 = 64).
func.func private @to_heads(%x: tensor<?x64xf32>, %w: tensor<64x64xf32>, %t: index)
    -> tensor<1x4x?x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty(%t) : tensor<?x64xf32>
  %z = linalg.fill ins(%c0 : f32) outs(%e : tensor<?x64xf32>) -> tensor<?x64xf32>
  %p = linalg.matmul ins(%x, %w : tensor<?x64xf32>, tensor<64x64xf32>)
                     outs(%z : tensor<?x64xf32>) -> tensor<?x64xf32>
  %s = tensor.expand_shape %p [[0, 1], [2, 3]] output_shape [1, %t, 4, 16]
         : tensor<?x64xf32> into tensor<1x?x4x16xf32>
  %h0 = tensor.empty(%t) : tensor<1x4x?x16xf32>
  %h = linalg.transpose ins(%s : tensor<1x?x4x16xf32>) outs(%h0 : tensor<1x4x?x16xf32>)
         permutation = [0, 2, 1, 3]
  return %h : tensor<1x4x?x16xf32>
}

// Projects to the 2 KV heads: [1, T, 64] x [64, 32] -> [1, 2, T, 16].
func.func private @to_kv_heads(%x: tensor<?x64xf32>, %w: tensor<64x32xf32>, %t: index)
    -> tensor<1x2x?x16xf32> {
  %c0 = arith.constant 0.0 : f32
  %e = tensor.empty(%t) : tensor<?x32xf32>
  %z = linalg.fill ins(%c0 : f32) outs(%e : tensor<?x32xf32>) -> tensor<?x32xf32>
  %p = linalg.matmul ins(%x, %w : tensor<?x64xf32>, tensor<64x32xf32>)
                     outs(%z : tensor<?x32xf32>) -> tensor<?x32xf32>
  %s = tensor.expand_shape %p [[0, 1], [2, 3]] output_shape [1, %t, 2, 16]
         : tensor<?x32xf32> into tensor<1x?x2x16xf32>
  %h0 = tensor.empty(%t) : tensor<1x2x?x16xf32>
  %h = linalg.transpose ins(%s : tensor<1x?x2x16xf32>) outs(%h0 : tensor<1x2x?x16xf32>)
         permutation = [0, 2, 1, 3]
  return %h : tensor<1x2x?x16xf32>
}

func.func @sparsek_layer(%x: tensor<1x?x64xf32>, %wq: tensor<64x64xf32>,
                         %wk: tensor<64x32xf32>, %wv: tensor<64x32xf32>,
                         %wsc: tensor<2x64xf32>, %bsc: tensor<2xf32>,
                         %wo: tensor<64x64xf32>, %out: tensor<1x?x64xf32>)
    -> tensor<1x?x64xf32> {
  %c1 = arith.constant 1 : index
  %t = tensor.dim %x, %c1 : tensor<1x?x64xf32>
  %x2 = tensor.collapse_shape %x [[0, 1], [2]] : tensor<1x?x64xf32> into tensor<?x64xf32>
  %q = func.call @to_heads(%x2, %wq, %t) : (tensor<?x64xf32>, tensor<64x64xf32>, index) -> tensor<1x4x?x16xf32>
  %k = func.call @to_kv_heads(%x2, %wk, %t) : (tensor<?x64xf32>, tensor<64x32xf32>, index) -> tensor<1x2x?x16xf32>
  %v = func.call @to_kv_heads(%x2, %wv, %t) : (tensor<?x64xf32>, tensor<64x32xf32>, index) -> tensor<1x2x?x16xf32>

  // One score per KV head and token (SPEC 2).
  %u0 = tensor.empty(%t) : tensor<1x2x?xf32>
  %u = sparsek.score ins(%x, %wsc : tensor<1x?x64xf32>, tensor<2x64xf32>)
         bias(%bsc : tensor<2xf32>) outs(%u0 : tensor<1x2x?xf32>) -> tensor<1x2x?xf32>

  // Selection from the scores, then attention over window + selected keys.
  %o0 = tensor.empty(%t) : tensor<1x4x?x16xf32>
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<1x4x?x16xf32>,
           tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?xf32>)
         k = 16 w = 16 outs(%o0 : tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32>

  // Heads back to [1, T, 64], then the output projection into %out.
  %m0 = tensor.empty(%t) : tensor<1x?x4x16xf32>
  %m = linalg.transpose ins(%o : tensor<1x4x?x16xf32>) outs(%m0 : tensor<1x?x4x16xf32>)
         permutation = [0, 2, 1, 3]
  %m2 = tensor.collapse_shape %m [[0], [1], [2, 3]] : tensor<1x?x4x16xf32> into tensor<1x?x64xf32>
  %wo3 = tensor.expand_shape %wo [[0, 1], [2]] output_shape [1, 64, 64]
           : tensor<64x64xf32> into tensor<1x64x64xf32>
  %c0 = arith.constant 0.0 : f32
  %z = linalg.fill ins(%c0 : f32) outs(%out : tensor<1x?x64xf32>) -> tensor<1x?x64xf32>
  %r = linalg.batch_matmul ins(%m2, %wo3 : tensor<1x?x64xf32>, tensor<1x64x64xf32>)
                           outs(%z : tensor<1x?x64xf32>) -> tensor<1x?x64xf32>
  return %r : tensor<1x?x64xf32>
}
