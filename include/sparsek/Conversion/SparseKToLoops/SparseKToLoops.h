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

LogicalResult lowerScoreToLoops(RewriterBase &rewriter, ScoreOp op);
LogicalResult lowerMaskToLoops(RewriterBase &rewriter, MaskOp op);
LogicalResult lowerSelectToLoops(RewriterBase &rewriter, SelectOp op);
LogicalResult lowerAttentionToLoops(RewriterBase &rewriter, AttentionOp op);
LogicalResult lowerDecodeAttentionToLoops(RewriterBase &rewriter,
                                          DecodeAttentionOp op);

} // namespace mlir::sparsek

#endif // SPARSEK_CONVERSION_SPARSEKTOLOOPS_SPARSEKTOLOOPS_H
