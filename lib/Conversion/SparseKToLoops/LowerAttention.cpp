//===- LowerAttention.cpp - Loop lowering of sparsek.attention (work in progress) ----===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

using namespace mlir;

LogicalResult mlir::sparsek::lowerAttentionToLoops(RewriterBase &rewriter, AttentionOp op) {
  return op.emitOpError() << "loop lowering not implemented yet";
}
