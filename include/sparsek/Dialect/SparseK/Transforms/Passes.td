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
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::tensor::TensorDialect"];
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
    only; this pass applies it to the public entry points too. A result that
    is the argument handed through `scf.for` iteration arguments or `scf.if`
    branches (a destination written in a loop) is folded to the argument
    first, with those ops' canonicalization patterns.

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
  let dependentDialects = ["::mlir::arith::ArithDialect",
                           "::mlir::memref::MemRefDialect"];
}

def SparseKTile : Pass<"sparsek-tile"> {
  let summary = "Tile sparsek ops into scf.forall over batch, head and query blocks";
  let description = [{
    Tiles every `sparsek.attention` (loops B, Hq, T), `sparsek.score`
    (B, Hkv, T) and `sparsek.decode_attention` (B, Hq) in tensor form with
    `scf.forall`, through their TilingInterface. Each tile is an op of the
    same kind on `tensor.extract_slice`s; a query tile of attention reads the
    key prefix that ends at its last query. A size of 0 leaves a dimension
    untiled. Query-head tiles must cover whole GQA groups (1 or a multiple of
    Hq / Hkv). With `map-to-blocks`, the foralls carry `#gpu.block` mappings.

    Before:

    ```mlir
    %o = sparsek.attention ins(%q, %k, %v, %i, %g : ...) w = 16
           outs(%init : tensor<1x8x?x64xf32>) -> tensor<1x8x?x64xf32>
    ```

    After (`attention-tile-sizes=1,1,64`):

    ```mlir
    %o = scf.forall (%b, %h, %t) = (0, 0, 0) to (1, 8, %T) step (1, 1, 64)
           shared_outs(%out = %init) -> (tensor<1x8x?x64xf32>) {
      %qs = tensor.extract_slice %q[%b, %h, %t, 0] ...
      %ks = tensor.extract_slice %k[%b, %kvh, 0, 0] [1, 1, %prefix, 64] ...
      %r = sparsek.attention ins(%qs, %ks, ...) w = 16 outs(%os : ...) -> ...
      scf.forall.in_parallel { tensor.parallel_insert_slice %r into %out[...] }
    }
    ```
  }];
  let options = [
    ListOption<"attentionTileSizes", "attention-tile-sizes", "int64_t",
               "Tile sizes of attention's (B, Hq, T) loops">,
    ListOption<"scoreTileSizes", "score-tile-sizes", "int64_t",
               "Tile sizes of score's (B, Hkv, T) loops">,
    ListOption<"decodeTileSizes", "decode-tile-sizes", "int64_t",
               "Tile sizes of decode_attention's (B, Hq) loops">,
    Option<"mapToBlocks", "map-to-blocks", "bool", /*default=*/"false",
           "Attach #gpu.block<x/y/z> mappings to the generated foralls">
  ];
  let dependentDialects = [
    "::mlir::affine::AffineDialect", "::mlir::gpu::GPUDialect",
    "::mlir::scf::SCFDialect", "::mlir::tensor::TensorDialect"
  ];
}

#endif // SPARSEK_TRANSFORMS_PASSES_TD
