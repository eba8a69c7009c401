//===- SparseKDialect.cpp - The sparsek dialect ---------------------------===//
//
// Registers the sparsek ops with the dialect.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Dialect/SparseK/IR/SparseKDialect.h"
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

using namespace mlir;
using namespace mlir::sparsek;

#include "sparsek/Dialect/SparseK/IR/SparseKOpsDialect.cpp.inc"

void SparseKDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "sparsek/Dialect/SparseK/IR/SparseKOps.cpp.inc"
      >();
}
