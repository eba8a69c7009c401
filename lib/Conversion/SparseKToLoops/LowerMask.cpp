//===- LowerMask.cpp - Loop lowering of sparsek.mask (work in progress) ----===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

using namespace mlir;

LogicalResult mlir::sparsek::lowerMaskToLoops(RewriterBase &rewriter, MaskOp op) {
  return op.emitOpError() << "loop lowering not implemented yet";
}
