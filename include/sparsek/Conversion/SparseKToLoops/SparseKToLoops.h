//===- SparseKToLoops.h - Loop lowerings of buffer-form sparsek ops -*- C++ -*-===//
//
// One function per op, each in its own file under lib/Conversion/
// SparseKToLoops/. Each replaces a buffer-form op by scf loops that write its
// destinations, with run-time checks reported through Status.h.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_CONVERSION_SPARSEKTOLOOPS_SPARSEKTOLOOPS_H
#define SPARSEK_CONVERSION_SPARSEKTOLOOPS_SPARSEKTOLOOPS_H

#include "mlir/IR/PatternMatch.h"
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

namespace mlir::sparsek {

/// How the loop lowerings shape their loop nests.
struct LoopLoweringOptions {
  /// Emit scf.parallel over independent iterations with per-iteration
  /// scratch on the stack, so that gpu-map-parallel-loops can map them to
  /// blocks and threads. Only reads of operand data happen inside them.
  bool parallelLoops = false;
  /// With parallelLoops: queries per outer iteration (the inner parallel
  /// loop, one query per GPU thread).
  int64_t queryBlock = 64;
};

LogicalResult lowerScoreToLoops(RewriterBase &rewriter, ScoreOp op);
LogicalResult lowerMaskToLoops(RewriterBase &rewriter, MaskOp op);
LogicalResult lowerSelectToLoops(RewriterBase &rewriter, SelectOp op);
LogicalResult lowerAttentionToLoops(RewriterBase &rewriter, AttentionOp op,
                                    const LoopLoweringOptions &options = {});
LogicalResult
lowerDecodeAttentionToLoops(RewriterBase &rewriter, DecodeAttentionOp op,
                            const LoopLoweringOptions &options = {});

} // namespace mlir::sparsek

#endif // SPARSEK_CONVERSION_SPARSEKTOLOOPS_SPARSEKTOLOOPS_H
