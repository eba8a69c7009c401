//===- LowerSelect.cpp - Loop lowering of sparsek.select (work in progress) ----===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

using namespace mlir;

LogicalResult mlir::sparsek::lowerSelectToLoops(RewriterBase &rewriter, SelectOp op) {
  return op.emitOpError() << "loop lowering not implemented yet";
}
