//===- SparseKCanonicalization.cpp - Canonical forms of sparsek ops -------===//
//
// Simplifications that hold for every input, decided from attributes and
// static shapes alone:
//  - a zero budget k makes the SPARSEK mask 0 and tau +inf, empties the
//    selection, and reduces composite attention to sliding-window attention
//    that no longer depends on the scores;
//  - when no row can have more than k candidates (static sizes), tau is -inf
//    for every row and every selected gate is 1, so attention over such a
//    selection needs no gates (padding entries are ignored by attention);
//  - a size check of a size against itself or of equal constants is dropped.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/PatternMatch.h"

#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

/// `init` filled with the f32 constant `value`, in destination-passing style.
static Value fillF32(PatternRewriter &rewriter, Location loc, Value init,
                     float value) {
  Value cst =
      arith::ConstantOp::create(rewriter, loc, rewriter.getF32FloatAttr(value));
  return linalg::FillOp::create(rewriter, loc, ValueRange{cst},
                                ValueRange{init})
      .getResult(0);
}

static constexpr float kInf = std::numeric_limits<float>::infinity();

/// True when the static row length `n` can never exceed the budget `k`.
static bool neverExceedsBudget(int64_t n, int64_t k) {
  return !ShapedType::isDynamic(n) && n <= k;
}

namespace {
/// mask with k = 0: p = 0 everywhere and tau = +inf (SPEC 3).
struct MaskZeroBudget : OpRewritePattern<MaskOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MaskOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics() || op.getKAttr().getInt() != 0)
      return rewriter.notifyMatchFailure(op, "budget is not zero");
    Location loc = op.getLoc();
    rewriter.replaceOp(op, {fillF32(rewriter, loc, op.getMaskInit(), 0.0f),
                            fillF32(rewriter, loc, op.getTauInit(), kInf)});
    return success();
  }
};

/// mask over rows no longer than k: tau = -inf (every unmasked entry gets
/// p = 1). The mask itself still depends on which entries are -inf.
struct MaskRowWithinBudget : OpRewritePattern<MaskOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MaskOp op,
                                PatternRewriter &rewriter) const override {
    auto z = cast<ShapedType>(op.getInput().getType());
    if (!op.hasPureTensorSemantics() || op.getKAttr().getInt() == 0 ||
        op->getResult(1).use_empty() ||
        !neverExceedsBudget(z.getShape().back(), op.getKAttr().getInt()))
      return rewriter.notifyMatchFailure(op, "rows may exceed the budget");
    rewriter.replaceAllUsesWith(
        op->getResult(1),
        fillF32(rewriter, op.getLoc(), op.getTauInit(), -kInf));
    return success();
  }
};

/// select with k = 0: no candidate is ever selected; the index and gate
/// results are empty and tau is +inf.
struct SelectZeroBudget : OpRewritePattern<SelectOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SelectOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics() || op.getKAttr().getInt() != 0)
      return rewriter.notifyMatchFailure(op, "budget is not zero");
    rewriter.replaceOp(op,
                       {op.getIndicesInit(), op.getGatesInit(),
                        fillF32(rewriter, op.getLoc(), op.getTauInit(), kInf)});
    return success();
  }
};

/// The largest candidate count of any query is S - w (the last query at
/// position S - 1 sees candidates 0 .. S - 1 - w).
static bool selectNeverExceedsBudget(SelectOp op) {
  int64_t s = cast<ShapedType>(op.getScores().getType()).getDimSize(2);
  return op.hasPureTensorSemantics() && op.getKAttr().getInt() > 0 &&
         !ShapedType::isDynamic(s) &&
         neverExceedsBudget(s - op.getWAttr().getInt(), op.getKAttr().getInt());
}

/// select where no query can have more than k candidates: tau = -inf.
struct SelectWithinBudgetTau : OpRewritePattern<SelectOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SelectOp op,
                                PatternRewriter &rewriter) const override {
    if (!selectNeverExceedsBudget(op) || op->getResult(2).use_empty())
      return rewriter.notifyMatchFailure(op, "queries may exceed the budget");
    rewriter.replaceAllUsesWith(
        op->getResult(2),
        fillF32(rewriter, op.getLoc(), op.getTauInit(), -kInf));
    return success();
  }
};

/// attention over a selection that never exceeds its budget: every selected
/// gate is clip(u + inf) = 1 and padding is ignored, so the gates are ones.
struct AttentionUnitGates : OpRewritePattern<AttentionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AttentionOp op,
                                PatternRewriter &rewriter) const override {
    auto select = op.getGates().getDefiningOp<SelectOp>();
    if (!select || op.getGates() != select->getResult(1) ||
        op.getIndices() != select->getResult(0) ||
        select.getWAttr().getInt() != op.getWAttr().getInt() ||
        !selectNeverExceedsBudget(select))
      return rewriter.notifyMatchFailure(op, "gates may be fractional");
    // A fresh destination: writing into the select's own gates_init would
    // force a copy once bufferized.
    Location loc = op.getLoc();
    Value empty = tensor::EmptyOp::create(
        rewriter, loc, tensor::getMixedSizes(rewriter, loc, op.getGates()),
        rewriter.getF32Type());
    Value ones = fillF32(rewriter, loc, empty, 1.0f);
    rewriter.modifyOpInPlace(op, [&] { op.getGatesMutable().assign(ones); });
    return success();
  }
};

/// select_attention with k = 0 is sliding-window attention: it becomes
/// attention with empty index and gate tensors and drops the scores.
struct SelectAttentionZeroBudget : OpRewritePattern<SelectAttentionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SelectAttentionOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics() || op.getKAttr().getInt() != 0)
      return rewriter.notifyMatchFailure(op, "budget is not zero");
    Location loc = op.getLoc();
    // [B, Hkv, T, 0]: B and Hkv from the key, T from the query.
    SmallVector<OpFoldResult> sizes = {
        tensor::getMixedSize(rewriter, loc, op.getKey(), 0),
        tensor::getMixedSize(rewriter, loc, op.getKey(), 1),
        tensor::getMixedSize(rewriter, loc, op.getQuery(), 2),
        rewriter.getIndexAttr(0)};
    Value indices =
        tensor::EmptyOp::create(rewriter, loc, sizes, rewriter.getI32Type());
    Value gates =
        tensor::EmptyOp::create(rewriter, loc, sizes, rewriter.getF32Type());
    rewriter.replaceOpWithNewOp<AttentionOp>(
        op, op->getResultTypes(), op.getQuery(), op.getKey(), op.getValue(),
        indices, gates, op.getWAttr(), op.getScaleAttr(), op.getInit());
    return success();
  }
};
} // namespace

void MaskOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                         MLIRContext *context) {
  results.add<MaskZeroBudget, MaskRowWithinBudget>(context);
}

void SelectOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                           MLIRContext *context) {
  results.add<SelectZeroBudget, SelectWithinBudgetTau>(context);
}

void AttentionOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                              MLIRContext *context) {
  results.add<AttentionUnitGates>(context);
}

void SelectAttentionOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                                    MLIRContext *context) {
  results.add<SelectAttentionZeroBudget>(context);
}

LogicalResult CheckSizesOp::canonicalize(CheckSizesOp op,
                                         PatternRewriter &rewriter) {
  std::optional<int64_t> lhs = getConstantIntValue(op.getLhs());
  std::optional<int64_t> rhs = getConstantIntValue(op.getRhs());
  if (op.getLhs() != op.getRhs() && !(lhs && rhs && *lhs == *rhs))
    return failure();
  rewriter.eraseOp(op);
  return success();
}
