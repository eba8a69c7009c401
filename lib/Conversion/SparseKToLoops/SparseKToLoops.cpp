//===- SparseKToLoops.cpp - The sparsek-lower-to-loops pass ---------------===//
//
// Dispatches every buffer-form sparsek op to its loop lowering. The composite
// select_attention is lowered fused (SPEC 7) unless it was decomposed
// before. A check_sizes becomes a status check in place (host code).
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "llvm/ADT/TypeSwitch.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKLOWERTOLOOPS
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// In the parallel form each query's weighted value sum is private to its
/// iteration: a GPU thread's local memory, of which CUDA gives a thread at
/// most 512 KiB (one f32 per value dimension). A longer static value row is
/// refused here rather than failing at launch (or overflowing a CPU stack).
LogicalResult checkPrivateAccumulator(Operation *op) {
  if (!isa<AttentionOp, DecodeAttentionOp, SelectAttentionOp>(op))
    return success();
  constexpr int64_t kMaxPrivateFloats = (int64_t(512) << 10) / 4;
  auto out = cast<ShapedType>(
      cast<DestinationStyleOpInterface>(op).getDpsInits()[0].getType());
  int64_t dv = out.getShape().back();
  if (ShapedType::isDynamic(dv) || dv <= kMaxPrivateFloats)
    return success();
  return op->emitOpError()
         << "value head dimension " << dv
         << " is too large for the parallel (GPU) form: each query keeps "
            "its f32 accumulator in the thread's local memory, at most "
         << kMaxPrivateFloats << " (512 KiB)";
}

struct SparseKLowerToLoopsPass
    : mlir::sparsek::impl::SparseKLowerToLoopsBase<SparseKLowerToLoopsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    LoopLoweringOptions options{parallelLoops, queryBlock, selectChunk};
    if (options.queryBlock <= 0) {
      mlir::emitError(module.getLoc())
          << "sparsek-lower-to-loops: query-block must be positive, got "
          << options.queryBlock;
      return signalPassFailure();
    }
    if (options.selectChunk < 0) {
      mlir::emitError(module.getLoc())
          << "sparsek-lower-to-loops: select-chunk must be 0 (automatic) or "
             "positive, got "
          << options.selectChunk;
      return signalPassFailure();
    }
    SmallVector<Operation *> ops;
    module.walk([&](Operation *op) {
      if (isa<SparseKDialect>(op->getDialect()))
        ops.push_back(op);
    });
    ensureStatusSymbols(module);
    IRRewriter rewriter(&getContext());
    for (Operation *op : ops) {
      rewriter.setInsertionPoint(op);
      if (auto check = dyn_cast<CheckSizesOp>(op)) {
        Value same = arith::CmpIOp::create(rewriter, check.getLoc(),
                                           arith::CmpIPredicate::eq,
                                           check.getLhs(), check.getRhs());
        emitCheck(rewriter, check.getLoc(), check, same,
                  SPARSEK_ERROR_SHAPE_MISMATCH);
        rewriter.eraseOp(check);
        continue;
      }
      auto dps = cast<DestinationStyleOpInterface>(op);
      if (!dps.hasPureBufferSemantics()) {
        op->emitOpError() << "is in tensor form; sparsek-lower-to-loops "
                             "lowers the buffer form: run one-shot-bufferize "
                             "first (sparsek-cpu-pipeline does)";
        return signalPassFailure();
      }
      rewriter.setInsertionPoint(op);
      if (options.parallelLoops &&
          !isa<ScoreOp, SelectOp, AttentionOp, DecodeAttentionOp,
               SelectAttentionOp, AttentionGradOp, SelectGradOp,
               SelectAttentionGradOp, ScoreGradOp>(op)) {
        op->emitOpError() << "has no parallel (GPU) lowering yet; score, "
                             "select, attention, select_attention, "
                             "decode_attention and the gradient ops but "
                             "mask_grad do";
        return signalPassFailure();
      }
      if (options.parallelLoops && failed(checkPrivateAccumulator(op)))
        return signalPassFailure();
      LogicalResult lowered =
          llvm::TypeSwitch<Operation *, LogicalResult>(op)
              .Case([&](ScoreOp o) {
                return lowerScoreToLoops(rewriter, o, options);
              })
              .Case([&](MaskOp o) { return lowerMaskToLoops(rewriter, o); })
              .Case([&](SelectOp o) {
                return lowerSelectToLoops(rewriter, o, options);
              })
              .Case([&](AttentionOp o) {
                return lowerAttentionToLoops(rewriter, o, options);
              })
              .Case([&](DecodeAttentionOp o) {
                return lowerDecodeAttentionToLoops(rewriter, o, options);
              })
              .Case([&](SelectAttentionOp o) {
                return lowerSelectAttentionToLoops(rewriter, o, options);
              })
              .Case([&](AttentionGradOp o) {
                return lowerAttentionGradToLoops(rewriter, o, options);
              })
              .Case([&](SelectGradOp o) {
                return lowerSelectGradToLoops(rewriter, o, options);
              })
              .Case([&](SelectAttentionGradOp o) {
                return lowerSelectAttentionGradToLoops(rewriter, o, options);
              })
              .Case([&](ScoreGradOp o) {
                return lowerScoreGradToLoops(rewriter, o, options);
              })
              .Case([&](MaskGradOp o) {
                return lowerMaskGradToLoops(rewriter, o);
              })
              .Default([](Operation *o) {
                return o->emitOpError() << "has no loop lowering";
              });
      if (failed(lowered))
        return signalPassFailure();
    }
  }
};
} // namespace
