//===- ParallelKeyGrad.h - dkey and dvalue by a pass over keys -*- C++ -*-===//
//
// The key pass of the parallel attention_grad (ParallelKeyGrad.cpp), for
// indices made by sparsek.select. Private to lib/Conversion/SparseKToLoops.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_PARALLELKEYGRAD_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_PARALLELKEYGRAD_H

#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

#include "mlir/IR/Builders.h"

namespace mlir::sparsek {

/// Run-time sizes of one sparsek.attention_grad (SPEC 1 names).
struct KeyGradShape {
  Value batch, hkv, t, s, k, group;
};

/// Whether the key pass can take `op`: static D and Dv (its sums are
/// vectors) of at most 1024 elements.
bool keyPassApplies(AttentionGradOp op);

/// Adds dkey and dvalue of `op` into its (zeroed) destinations by the key
/// pass. `lse` and `delta` are f32 [B, Hq, T]: each query's log-sum-exp of
/// scaled scores and Delta = sum_j a_j dP_j. `op`'s indices must be a
/// selection as sparsek.select writes it: rows ascending, -1 padding at the
/// end, and a key that leaves a query's selection absent from every later
/// query's.
void emitParallelKeyGrad(OpBuilder &b, Location loc, AttentionGradOp op,
                         const KeyGradShape &z, Value scale, Value lse,
                         Value delta, int64_t block);

/// lowerAttentionGradToLoops for an attention_grad whose indices
/// sparsek.select made (the composite's lowering): the parallel form may
/// then use the key pass.
LogicalResult
lowerSelectedAttentionGradToLoops(RewriterBase &rewriter, AttentionGradOp op,
                                  const LoopLoweringOptions &options);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOLOOPS_PARALLELKEYGRAD_H
