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

def SparseKDropReturnedArguments
    : Pass<"sparsek-drop-returned-arguments", "ModuleOp"> {
  let summary = "Make bufferized entry points destination-passing: drop results that are arguments";
  let description = [{
    After one-shot bufferization with function boundaries, a function whose
    tensor results were its `outs` arguments returns those argument buffers.
    This pass removes such results from every function, public ones
    included, and updates call sites, so that a C caller passes every buffer
    and nothing is returned (or cloned, or leaked). Upstream's
    `drop-equivalent-buffer-results` does the same for private functions
    only; this pass applies it to the public entry points too.

    Before:

    ```mlir
    func.func @f(%a: memref<4xf32>) -> memref<4xf32> {
      return %a : memref<4xf32>
    }
    ```

    After:

    ```mlir
    func.func @f(%a: memref<4xf32>) {
      return
    }
    ```
  }];
  let dependentDialects = ["::mlir::memref::MemRefDialect"];
}

#endif // SPARSEK_TRANSFORMS_PASSES_TD
