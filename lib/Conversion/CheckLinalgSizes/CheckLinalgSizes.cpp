//===- CheckLinalgSizes.cpp - The sparsek-check-linalg-sizes pass ---------===//
//
// A linalg op's operands must agree on the size of every loop dimension they
// share: in `linalg.matmul ins(A, B) outs(C)`, A's columns are B's rows.
// Where those sizes are dynamic nothing checks them (the verifier sees `?`,
// the entry points check each argument against its own type only), and the
// loops then read or write past the smaller buffer. Each buffer-form linalg
// op whose operands share a dynamic size is guarded: the sizes that index
// one loop dimension by a plain dimension of their maps must be equal;
// otherwise the status word records SPARSEK_ERROR_SHAPE_MISMATCH and the op
// is skipped.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"

#include <optional>

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKCHECKLINALGSIZES
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// One operand dimension: buffer `value`, dimension `dim`.
struct OperandDim {
  Value value;
  int64_t dim;

  bool isDynamic() const {
    return cast<MemRefType>(value.getType()).isDynamicDim(dim);
  }
};
} // namespace

/// i1: every pair of operand dimensions of `op` that index the same loop
/// dimension agree, where one of them is dynamic; null when no pair is.
static Value emitSizesAgree(OpBuilder &b, linalg::LinalgOp op) {
  Location loc = op.getLoc();
  SmallVector<std::optional<OperandDim>> first(op.getNumLoops());
  Value ok;
  for (OpOperand &operand : op->getOpOperands()) {
    if (!isa<MemRefType>(operand.get().getType()))
      continue;
    AffineMap map = op.getMatchingIndexingMap(&operand);
    for (auto [r, expr] : llvm::enumerate(map.getResults())) {
      auto dim = dyn_cast<AffineDimExpr>(expr);
      if (!dim)
        continue;
      OperandDim here{operand.get(), static_cast<int64_t>(r)};
      std::optional<OperandDim> &seen = first[dim.getPosition()];
      if (!seen) {
        seen = here;
        continue;
      }
      if (!seen->isDynamic() && !here.isDynamic())
        continue; // the verifier compared them
      Value x = emitDim(b, loc, seen->value, seen->dim);
      Value y = emitDim(b, loc, here.value, here.dim);
      Value eq = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, y);
      ok = ok ? arith::AndIOp::create(b, loc, ok, eq).getResult() : eq;
    }
  }
  return ok;
}

namespace {
struct SparseKCheckLinalgSizesPass
    : mlir::sparsek::impl::SparseKCheckLinalgSizesBase<
          SparseKCheckLinalgSizesPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<linalg::LinalgOp> ops;
    module.walk([&](linalg::LinalgOp op) {
      if (op.hasPureBufferSemantics())
        ops.push_back(op);
    });
    bool symbols = false;
    for (linalg::LinalgOp op : ops) {
      OpBuilder b(op);
      Value ok = emitSizesAgree(b, op);
      if (!ok)
        continue;
      if (!symbols) {
        ensureStatusSymbols(module);
        symbols = true;
      }
      Location loc = op.getLoc();
      auto ifOp = scf::IfOp::create(
          b, loc, emitCheck(b, loc, op, ok, SPARSEK_ERROR_SHAPE_MISMATCH),
          /*withElseRegion=*/false);
      op->moveBefore(ifOp.thenBlock()->getTerminator());
    }
  }
};
} // namespace
