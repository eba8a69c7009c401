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
  /// scratch on the stack (or, for select, slices of buffers allocated
  /// outside), so that gpu-map-parallel-loops can map them to blocks and
  /// threads. Operand data is only read inside them, and they record no
  /// status: kernels treat NaN and +inf scores as masked (SPEC 3).
  bool parallelLoops = false;
  /// With parallelLoops: queries per outer iteration (the inner parallel
  /// loop, one query per GPU thread).
  int64_t queryBlock = 64;
  /// With parallelLoops: candidates per selection chunk (ChunkedSelection);
  /// 0 picks a length from the row's size.
  int64_t selectChunk = 0;
};

LogicalResult lowerScoreToLoops(RewriterBase &rewriter, ScoreOp op,
                                const LoopLoweringOptions &options = {});
LogicalResult lowerMaskToLoops(RewriterBase &rewriter, MaskOp op);
/// With options.parallelLoops, kernels parallel over query chunks (scratch
/// allocated on the host, which sparsek-gpu-host-allocs moves to the GPU).
LogicalResult lowerSelectToLoops(RewriterBase &rewriter, SelectOp op,
                                 const LoopLoweringOptions &options = {});
/// The fused composite (SPEC 7): the chunked selection's thresholds, then
/// attention that visits each query's selection without materializing it.
LogicalResult
lowerSelectAttentionToLoops(RewriterBase &rewriter, SelectAttentionOp op,
                            const LoopLoweringOptions &options = {});
LogicalResult lowerAttentionToLoops(RewriterBase &rewriter, AttentionOp op,
                                    const LoopLoweringOptions &options = {});
LogicalResult
lowerDecodeAttentionToLoops(RewriterBase &rewriter, DecodeAttentionOp op,
                            const LoopLoweringOptions &options = {});

/// The gradient ops (SPEC 5 "Backward"). The serial nests are the numerical
/// reference of the backward pass; with options.parallelLoops,
/// attention_grad, select_grad, select_attention_grad and score_grad get
/// parallel forms (one thread per query, key or element, sums over queries
/// or tokens added atomically). mask_grad has only the serial form.
LogicalResult
lowerAttentionGradToLoops(RewriterBase &rewriter, AttentionGradOp op,
                          const LoopLoweringOptions &options = {});
LogicalResult lowerSelectGradToLoops(RewriterBase &rewriter, SelectGradOp op,
                                     const LoopLoweringOptions &options = {});
/// Recomputes the selection, then attention_grad and select_grad.
LogicalResult
lowerSelectAttentionGradToLoops(RewriterBase &rewriter,
                                SelectAttentionGradOp op,
                                const LoopLoweringOptions &options = {});
LogicalResult lowerScoreGradToLoops(RewriterBase &rewriter, ScoreGradOp op,
                                    const LoopLoweringOptions &options = {});
LogicalResult lowerMaskGradToLoops(RewriterBase &rewriter, MaskGradOp op);

} // namespace mlir::sparsek

#endif // SPARSEK_CONVERSION_SPARSEKTOLOOPS_SPARSEKTOLOOPS_H
