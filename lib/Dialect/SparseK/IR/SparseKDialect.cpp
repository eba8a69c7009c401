//===- SparseKDialect.cpp - The sparsek dialect ---------------------------===//
//
// Registers the sparsek ops with the dialect, and makes them inlinable.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Dialect/SparseK/IR/SparseKDialect.h"
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

#include "mlir/Transforms/InliningUtils.h"

using namespace mlir;
using namespace mlir::sparsek;

#include "sparsek/Dialect/SparseK/IR/SparseKOpsDialect.cpp.inc"

namespace {
/// Every sparsek op computes from its operands alone (no regions, no symbols,
/// no state), so it may be inlined anywhere. Without this the pipelines'
/// first step (inline private functions) leaves a call to any private helper
/// that holds a sparsek op.
struct SparseKInlinerInterface : DialectInlinerInterface {
  using DialectInlinerInterface::DialectInlinerInterface;

  bool isLegalToInline(Operation *, Region *, bool, IRMapping &) const final {
    return true;
  }
};
} // namespace

void SparseKDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "sparsek/Dialect/SparseK/IR/SparseKOps.cpp.inc"
      >();
  addInterfaces<SparseKInlinerInterface>();
}
