// The sparsek dialect: SparseK attention (scoring, SPARSEK top-k mask,
// causal selection, sparse attention, decoding) as tensor ops.
#ifndef SPARSEK_DIALECT_TD
#define SPARSEK_DIALECT_TD

include "mlir/IR/OpBase.td"

def SparseK_Dialect : Dialect {
  let name = "sparsek";
  let cppNamespace = "::mlir::sparsek";
  let summary = "Learned sparse attention (SparseK) as tensor operations";
  let description = [{
    The `sparsek` dialect expresses SparseK attention (Lou et al., "Sparser is
    Faster and Less is More", 2024): a scoring network gives each key/value
    pair one query-independent score; the SPARSEK operator turns the scores a
    query may see into a soft top-k mask; each query attends to its top-k
    scored pairs, gated by the mask, plus a sliding window of recent tokens.

    All ops work on ranked tensors in destination-passing style: every result
    has a matching `outs` operand. Layout is `[B, H, T, D]`; scores, masks,
    thresholds and gates are `f32`; q/k/v may be `f16`, `bf16` or `f32` with
    `f32` accumulation. Batch and sequence lengths may be dynamic. The exact
    semantics of every op are fixed by the project's SPEC.md.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

class SparseK_Op<string mnemonic, list<Trait> traits = []>
    : Op<SparseK_Dialect, mnemonic, traits>;

#endif // SPARSEK_DIALECT_TD
