//===- LowerScore.cpp - Loop lowering of sparsek.score --------------------===//
//
// u[b, h, t] = sum_c x[b, t, c] * Wsc[h, c] + bias[h] + slope[h] * (offset + t)
// (SPEC 2) as a loop nest over (b, h, t) with the reduction over c carried
// in f32, whatever the storage type of x and Wsc. The parallel (GPU) form
// runs one token per thread over blocks of tokens of one (b, h)
// (emitParallelQueryBlocks); it reads only x, Wsc, bias and slope, so the
// host keeps nothing but the size checks.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

#include "LoopUtils.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace mlir::sparsek;

/// Records mismatching dynamic sizes; returns the i1 guarding the loops.
static Value emitScoreChecks(OpBuilder &b, Location loc, ScoreOp op) {
  Value x = op.getInput(), wsc = op.getWeight(), u = op.getInit();
  SmallVector<DimPair> pairs = {
      {x, 0, u, 0},   // B
      {x, 1, u, 2},   // T
      {x, 2, wsc, 1}, // C
      {wsc, 0, u, 1}, // Hkv
  };
  for (Value perHead : {op.getBias(), op.getSlope()})
    if (perHead)
      pairs.push_back({wsc, 0, perHead, 0});
  return emitCheck(b, loc, op, emitDimsAllEqual(b, loc, pairs),
                   SPARSEK_ERROR_SHAPE_MISMATCH);
}

/// The score of (b, h, t): the f32 dot product plus the optional terms.
static Value emitScore(OpBuilder &b, Location loc, ScoreOp op, Value bi,
                       Value h, Value t, Value width) {
  Value u = emitDotF32(b, loc, Row{op.getInput(), {bi, t}},
                       Row{op.getWeight(), {h}}, width);
  if (Value bias = op.getBias())
    u = arith::AddFOp::create(b, loc, u,
                              memref::LoadOp::create(b, loc, bias, h));
  if (Value slope = op.getSlope()) {
    // The slope sees the absolute position, counted from the start of the
    // sequence rather than of this call.
    Value pos = t;
    if (Value offset = op.getOffset())
      pos = arith::AddIOp::create(b, loc, offset, t);
    Value posI64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), pos);
    Value posF32 = arith::SIToFPOp::create(b, loc, b.getF32Type(), posI64);
    Value s = memref::LoadOp::create(b, loc, slope, h);
    u = arith::AddFOp::create(b, loc, u,
                              arith::MulFOp::create(b, loc, s, posF32));
  }
  return u;
}

LogicalResult
mlir::sparsek::lowerScoreToLoops(RewriterBase &rewriter, ScoreOp op,
                                 const LoopLoweringOptions &options) {
  Location loc = op.getLoc();
  Value x = op.getInput(), u = op.getInit();
  Value ok = emitScoreChecks(rewriter, loc, op);
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location loc) {
    Value zero = emitIndex(b, loc, 0);
    Value batch = emitDim(b, loc, x, 0), tokens = emitDim(b, loc, x, 1),
          width = emitDim(b, loc, x, 2), heads = emitDim(b, loc, u, 1);
    if (options.parallelLoops) {
      emitParallelQueryBlocks(
          b, loc, batch, heads, tokens, options.queryBlock,
          [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t) {
            Value score = emitScore(nb, nl, op, bi, h, t, width);
            memref::StoreOp::create(nb, nl, score, u, ValueRange{bi, h, t});
          });
      return;
    }
    emitFor(b, loc, zero, batch, [&](OpBuilder &b1, Location l1, Value bi) {
      emitFor(b1, l1, zero, heads, [&](OpBuilder &b2, Location l2, Value h) {
        emitFor(b2, l2, zero, tokens, [&](OpBuilder &b3, Location l3, Value t) {
          Value score = emitScore(b3, l3, op, bi, h, t, width);
          memref::StoreOp::create(b3, l3, score, u, ValueRange{bi, h, t});
        });
      });
    });
  });
  rewriter.eraseOp(op);
  return success();
}
