// Transformations on sparsek ops (tensor level, before any lowering).
#ifndef SPARSEK_TRANSFORMS_PASSES_TD
#define SPARSEK_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def SparseKDecomposeSelectAttention
    : Pass<"sparsek-decompose-select-attention"> {
  let summary = "Split composite select_attention into select + attention";
  let description = [{
    Rewrites every `sparsek.select_attention` into a `sparsek.select` that
    materializes indices, gates and tau per query, followed by a
    `sparsek.attention` over them (SPEC 7). Paths that do not fuse selection
    into the attention kernel (the CPU reference, the decomposed GPU path)
    run this first. Dynamic dimensions are carried through `tensor.dim`.

    Before:

    ```mlir
    %o = sparsek.select_attention ins(%q, %k, %v, %u : ...) k = 64 w = 16
           outs(%init : tensor<1x4x?x32xf32>) -> tensor<1x4x?x32xf32>
    ```

    After:

    ```mlir
    %idx, %g, %tau = sparsek.select ins(%u : tensor<1x2x?xf32>) k = 64 w = 16
        outs(%i0, %g0, %t0 : tensor<1x2x?x64xi32>, tensor<1x2x?x64xf32>,
                             tensor<1x2x?xf32>) -> ...
    %o = sparsek.attention ins(%q, %k, %v, %idx, %g : ...) w = 16
           outs(%init : tensor<1x4x?x32xf32>) -> tensor<1x4x?x32xf32>
    ```
  }];
  let options = [
    Option<"indexBitwidth", "index-bitwidth", "unsigned", /*default=*/"32",
           "Bit width of the materialized indices (32 or 64)">
  ];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

#endif // SPARSEK_TRANSFORMS_PASSES_TD
