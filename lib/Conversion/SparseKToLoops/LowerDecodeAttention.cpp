//===- LowerDecodeAttention.cpp - Loop lowering of sparsek.decode_attention (work in progress) ----===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

using namespace mlir;

LogicalResult mlir::sparsek::lowerDecodeAttentionToLoops(RewriterBase &rewriter, DecodeAttentionOp op) {
  return op.emitOpError() << "loop lowering not implemented yet";
}
