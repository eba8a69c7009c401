// Conversions of sparsek ops to other dialects.
#ifndef SPARSEK_CONVERSION_PASSES_TD
#define SPARSEK_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def SparseKLowerToLoops : Pass<"sparsek-lower-to-loops", "ModuleOp"> {
  let summary = "Lower buffer-form sparsek ops to scf loops over memrefs (CPU reference)";
  let description = [{
    Rewrites every sparsek op in buffer form (after one-shot bufferization)
    into scf/arith/math/memref code that computes exactly what SPEC.md says:
    exact SPARSEK thresholds accumulated in f64, selection by a running
    top-k over the prefix (O(log k) per candidate, never a sort per query),
    and attention with an online softmax over the window and the selected
    keys (no T x S intermediate; extra memory O(k) per row).

    Bad input found at run time (NaN or +inf scores, dynamic sizes that
    disagree, more queries than keys) is recorded in the module's status word
    (`sparsek_status()`, codes in include/sparsek-c/Status.h) and the op's
    computation is skipped; the process never aborts.

    Ops still in tensor form are an error: run one-shot-bufferize first (the
    `sparsek-cpu-pipeline` does).
  }];
  let options = [
    Option<"parallelLoops", "parallel-loops", "bool", /*default=*/"false",
           "Emit scf.parallel over independent (batch, head, query-block) "
           "iterations and per-query stack scratch, for mapping to a GPU; "
           "ops without a parallel lowering are rejected">,
    Option<"queryBlock", "query-block", "int64_t", /*default=*/"64",
           "With parallel-loops: queries per outer parallel iteration">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect"
  ];
}

#endif // SPARSEK_CONVERSION_PASSES_TD
