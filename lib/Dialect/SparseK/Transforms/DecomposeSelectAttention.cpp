//===- DecomposeSelectAttention.cpp - select_attention -> select + attention =//
//
// The composite op means selection followed by attention (SPEC 7). Paths that
// do not fuse the two lower this pair instead of the composite. The
// composite's lowering checks that the scores and the keys have the same S;
// after the split select sees only the scores and attention only the keys,
// so that check stays behind as a sparsek.check_sizes, ahead of both.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"
#include "sparsek/Dialect/SparseK/Transforms/Passes.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKDECOMPOSESELECTATTENTION
#include "sparsek/Dialect/SparseK/Transforms/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

namespace {
struct DecomposeSelectAttention : OpRewritePattern<SelectAttentionOp> {
  DecomposeSelectAttention(MLIRContext *ctx, unsigned indexBitwidth)
      : OpRewritePattern(ctx), indexBitwidth(indexBitwidth) {}

  LogicalResult matchAndRewrite(SelectAttentionOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasPureTensorSemantics())
      return rewriter.notifyMatchFailure(op, "only the tensor form is split");
    Location loc = op.getLoc();
    OpFoldResult b = tensor::getMixedSize(rewriter, loc, op.getScores(), 0);
    OpFoldResult h = tensor::getMixedSize(rewriter, loc, op.getScores(), 1);
    OpFoldResult t = tensor::getMixedSize(rewriter, loc, op.getQuery(), 2);
    // Static sizes were compared by the verifier.
    OpFoldResult scoresS =
        tensor::getMixedSize(rewriter, loc, op.getScores(), 2);
    OpFoldResult keysS = tensor::getMixedSize(rewriter, loc, op.getKey(), 2);
    if (!getConstantIntValue(scoresS) || !getConstantIntValue(keysS))
      CheckSizesOp::create(
          rewriter, loc,
          getValueOrCreateConstantIndexOp(rewriter, loc, scoresS),
          getValueOrCreateConstantIndexOp(rewriter, loc, keysS));
    // No query selects more than min(k, S) positions, and a budget of
    // min(k, S) selects and gates exactly what k does (the SPARSEK budget
    // only matters up to the number of candidates): the materialized lists
    // are sized by it, not by k, which may exceed S by far.
    IntegerAttr selectK = op.getKAttr();
    OpFoldResult k;
    if (std::optional<int64_t> s = getConstantIntValue(scoresS)) {
      if (op.getK() > *s)
        selectK = rewriter.getI64IntegerAttr(std::max<int64_t>(*s, 1));
      k = rewriter.getIndexAttr(selectK.getInt());
    } else {
      k = arith::MinUIOp::create(
              rewriter, loc,
              arith::ConstantIndexOp::create(rewriter, loc, op.getK()),
              getValueOrCreateConstantIndexOp(rewriter, loc, scoresS))
              .getResult();
    }
    Type f32 = rewriter.getF32Type();
    Value indices = tensor::EmptyOp::create(
        rewriter, loc, ArrayRef<OpFoldResult>{b, h, t, k},
        rewriter.getIntegerType(indexBitwidth));
    Value gates = tensor::EmptyOp::create(
        rewriter, loc, ArrayRef<OpFoldResult>{b, h, t, k}, f32);
    Value tau = tensor::EmptyOp::create(rewriter, loc,
                                        ArrayRef<OpFoldResult>{b, h, t}, f32);
    auto select = SelectOp::create(
        rewriter, loc,
        TypeRange{indices.getType(), gates.getType(), tau.getType()},
        op.getScores(), selectK, op.getWAttr(), indices, gates, tau);
    rewriter.replaceOpWithNewOp<AttentionOp>(
        op, op->getResultTypes(), op.getQuery(), op.getKey(), op.getValue(),
        select->getResult(0), select->getResult(1), op.getWAttr(),
        op.getScaleAttr(), op.getInit());
    return success();
  }

  unsigned indexBitwidth;
};

struct SparseKDecomposeSelectAttentionPass
    : mlir::sparsek::impl::SparseKDecomposeSelectAttentionBase<
          SparseKDecomposeSelectAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    if (indexBitwidth != 32 && indexBitwidth != 64) {
      mlir::emitError(getOperation()->getLoc())
          << "sparsek-decompose-select-attention: index-bitwidth must be 32 "
             "or 64, got "
          << static_cast<unsigned>(indexBitwidth);
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    populateDecomposeSelectAttentionPatterns(patterns, indexBitwidth);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void mlir::sparsek::populateDecomposeSelectAttentionPatterns(
    RewritePatternSet &patterns, unsigned indexBitwidth) {
  patterns.add<DecomposeSelectAttention>(patterns.getContext(), indexBitwidth);
}
