//===- LowerScore.cpp - Loop lowering of sparsek.score (work in progress) ----===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

using namespace mlir;

LogicalResult mlir::sparsek::lowerScoreToLoops(RewriterBase &rewriter, ScoreOp op) {
  return op.emitOpError() << "loop lowering not implemented yet";
}
