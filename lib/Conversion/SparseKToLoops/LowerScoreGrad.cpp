//===- LowerScoreGrad.cpp - Loop lowering of sparsek.score_grad -----------===//
//
// The chain rule through SPEC 2's affine scoring network. Each gradient is
// one reduction written once, carried in an f32 register through its loops:
//   dx[b, t, c] = sum_h du[b, h, t] W[h, c]
//   dW[h, c]    = sum_{b, t} du[b, h, t] x[b, t, c]
//   dbias[h]    = sum_{b, t} du[b, h, t]
//   dslope[h]   = sum_{b, t} du[b, h, t] (offset + t)
// The parallel (GPU) form: dx one thread per element; the sums over tokens
// in chunks of kTokenChunk tokens, one thread per (b, chunk, c) or
// (b, h, chunk), each adding its partial sum atomically (no thread walks
// all B T tokens).
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

#include "LoopUtils.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::sparsek;

/// Sums `term(bi, t)` (f32 values, one per accumulator) over every batch
/// row and token.
static SmallVector<Value> emitSumOverTokens(
    OpBuilder &b, Location loc, Value batch, Value tokens, unsigned n,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, Value)>
        term) {
  Value zero = emitIndex(b, loc, 0);
  SmallVector<Value> init(n, emitF32(b, loc, 0.0));
  return emitForCarrying(
      b, loc, zero, batch, init,
      [&](OpBuilder &b1, Location l1, Value bi, ValueRange outer) {
        return emitForCarrying(
            b1, l1, zero, tokens, outer,
            [&](OpBuilder &b2, Location l2, Value t, ValueRange acc) {
              SmallVector<Value> next;
              for (auto [a, v] : llvm::zip(acc, term(b2, l2, bi, t)))
                next.push_back(arith::AddFOp::create(b2, l2, a, v));
              return next;
            });
      });
}

/// Tokens per partial sum of the parallel form.
static constexpr int64_t kTokenChunk = 256;

/// f32 (offset + t), the position that multiplies the slope.
static Value emitPositionF32(OpBuilder &b, Location loc, ScoreGradOp op,
                             Value t) {
  Value pos = t;
  if (Value offset = op.getOffset())
    pos = arith::AddIOp::create(b, loc, offset, t);
  return arith::SIToFPOp::create(
      b, loc, b.getF32Type(),
      arith::IndexCastOp::create(b, loc, b.getI64Type(), pos));
}

static void emitParallelScoreGrad(OpBuilder &b, Location loc, ScoreGradOp op,
                                  int64_t block) {
  Value x = op.getInput(), wsc = op.getWeight(), du = op.getGradScores();
  Value dx = op.getGradInputInit(), dw = op.getGradWeightInit(),
        db = op.getGradBiasInit(), ds = op.getGradSlopeInit();
  Value zero = emitIndex(b, loc, 0);
  Value batch = emitDim(b, loc, x, 0), tokens = emitDim(b, loc, x, 1),
        width = emitDim(b, loc, x, 2), heads = emitDim(b, loc, wsc, 0);
  auto grad = [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t) {
    return memref::LoadOp::create(nb, nl, du, ValueRange{bi, h, t}).getResult();
  };
  emitParallelBlocks(
      b, loc, {batch, tokens}, width, block,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value c) {
        Value sum =
            emitForCarrying(nb, nl, zero, heads, emitF32(nb, nl, 0.0),
                            [&](OpBuilder &hb, Location hl, Value h,
                                ValueRange acc) -> SmallVector<Value> {
                              Value w = emitLoadF32(hb, hl, wsc, {h, c});
                              Value p = arith::MulFOp::create(
                                  hb, hl, grad(hb, hl, ivs[0], h, ivs[1]), w);
                              return {arith::AddFOp::create(hb, hl, acc[0], p)};
                            })[0];
        memref::StoreOp::create(nb, nl, sum, dx, ValueRange{ivs[0], ivs[1], c});
      });
  for (Value dest : {dw, db, ds})
    emitParallelZeroFill(b, loc, dest, block);
  Value chunk = emitIndex(b, loc, kTokenChunk);
  Value chunks = arith::CeilDivUIOp::create(b, loc, tokens, chunk);
  auto chunkTokens = [&](OpBuilder &nb, Location nl, Value ci) {
    Value lo = arith::MulIOp::create(nb, nl, ci, chunk);
    Value hi = arith::MinUIOp::create(
        nb, nl, arith::AddIOp::create(nb, nl, lo, chunk), tokens);
    return std::make_pair(lo, hi);
  };
  // dW: per (b, chunk, c), every head.
  emitParallelBlocks(
      b, loc, {batch, chunks}, width, block,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value c) {
        auto range = chunkTokens(nb, nl, ivs[1]);
        Value lo = range.first, hi = range.second;
        emitFor(nb, nl, zero, heads, [&](OpBuilder &hb, Location hl, Value h) {
          Value sum = emitForCarrying(
              hb, hl, lo, hi, emitF32(hb, hl, 0.0),
              [&](OpBuilder &tb, Location tl, Value t,
                  ValueRange acc) -> SmallVector<Value> {
                Value xv = emitLoadF32(tb, tl, x, {ivs[0], t, c});
                Value p = arith::MulFOp::create(tb, tl,
                                                grad(tb, tl, ivs[0], h, t), xv);
                return {arith::AddFOp::create(tb, tl, acc[0], p)};
              })[0];
          emitAtomicAdd(hb, hl, dw, {h, c}, sum);
        });
      });
  // dbias, dslope: per (b, h, chunk).
  emitParallelBlocks(b, loc, {batch, heads}, chunks, block,
                     [&](OpBuilder &nb, Location nl, ValueRange ivs, Value ci) {
                       auto range = chunkTokens(nb, nl, ci);
                       Value lo = range.first, hi = range.second;
                       Value f0 = emitF32(nb, nl, 0.0);
                       SmallVector<Value> sums = emitForCarrying(
                           nb, nl, lo, hi, {f0, f0},
                           [&](OpBuilder &tb, Location tl, Value t,
                               ValueRange acc) -> SmallVector<Value> {
                             Value g = grad(tb, tl, ivs[0], ivs[1], t);
                             Value gp = arith::MulFOp::create(
                                 tb, tl, g, emitPositionF32(tb, tl, op, t));
                             return {arith::AddFOp::create(tb, tl, acc[0], g),
                                     arith::AddFOp::create(tb, tl, acc[1], gp)};
                           });
                       emitAtomicAdd(nb, nl, db, {ivs[1]}, sums[0]);
                       emitAtomicAdd(nb, nl, ds, {ivs[1]}, sums[1]);
                     });
}

LogicalResult
mlir::sparsek::lowerScoreGradToLoops(RewriterBase &rewriter, ScoreGradOp op,
                                     const LoopLoweringOptions &options) {
  Location loc = op.getLoc();
  Value x = op.getInput(), wsc = op.getWeight(), du = op.getGradScores();
  Value dx = op.getGradInputInit(), dw = op.getGradWeightInit(),
        db = op.getGradBiasInit(), ds = op.getGradSlopeInit();
  Value shapesOk = emitDimsAllEqual(rewriter, loc,
                                    {{x, 0, du, 0},
                                     {x, 1, du, 2},
                                     {x, 2, wsc, 1},
                                     {wsc, 0, du, 1},
                                     {x, 0, dx, 0},
                                     {x, 1, dx, 1},
                                     {x, 2, dx, 2},
                                     {wsc, 0, dw, 0},
                                     {wsc, 1, dw, 1},
                                     {wsc, 0, db, 0},
                                     {wsc, 0, ds, 0}});
  Value ok =
      emitCheck(rewriter, loc, op, shapesOk, SPARSEK_ERROR_SHAPE_MISMATCH);
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    if (options.parallelLoops)
      return emitParallelScoreGrad(b, l, op, options.queryBlock);
    Value zero = emitIndex(b, l, 0);
    Value batch = emitDim(b, l, x, 0), tokens = emitDim(b, l, x, 1),
          width = emitDim(b, l, x, 2), heads = emitDim(b, l, wsc, 0);
    auto grad = [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t) {
      return memref::LoadOp::create(nb, nl, du, ValueRange{bi, h, t})
          .getResult();
    };
    // dx: a sum over heads per (b, t, c).
    emitFor(b, l, zero, batch, [&](OpBuilder &b1, Location l1, Value bi) {
      emitFor(b1, l1, zero, tokens, [&](OpBuilder &b2, Location l2, Value t) {
        emitFor(b2, l2, zero, width, [&](OpBuilder &b3, Location l3, Value c) {
          Value sum = emitForCarrying(
              b3, l3, zero, heads, emitF32(b3, l3, 0.0),
              [&](OpBuilder &b4, Location l4, Value h,
                  ValueRange acc) -> SmallVector<Value> {
                Value w = emitLoadF32(b4, l4, wsc, {h, c});
                Value p =
                    arith::MulFOp::create(b4, l4, grad(b4, l4, bi, h, t), w);
                return {arith::AddFOp::create(b4, l4, acc[0], p)};
              })[0];
          memref::StoreOp::create(b3, l3, sum, dx, ValueRange{bi, t, c});
        });
      });
    });
    // dW, dbias, dslope: sums over (b, t) per head.
    emitFor(b, l, zero, heads, [&](OpBuilder &b1, Location l1, Value h) {
      SmallVector<Value> sums = emitSumOverTokens(
          b1, l1, batch, tokens, 2,
          [&](OpBuilder &nb, Location nl, Value bi,
              Value t) -> SmallVector<Value> {
            Value g = grad(nb, nl, bi, h, t);
            return {g, arith::MulFOp::create(nb, nl, g,
                                             emitPositionF32(nb, nl, op, t))};
          });
      memref::StoreOp::create(b1, l1, sums[0], db, h);
      memref::StoreOp::create(b1, l1, sums[1], ds, h);
      emitFor(b1, l1, zero, width, [&](OpBuilder &b2, Location l2, Value c) {
        Value sum =
            emitSumOverTokens(b2, l2, batch, tokens, 1,
                              [&](OpBuilder &nb, Location nl, Value bi,
                                  Value t) -> SmallVector<Value> {
                                Value xv = emitLoadF32(nb, nl, x, {bi, t, c});
                                return {arith::MulFOp::create(
                                    nb, nl, grad(nb, nl, bi, h, t), xv)};
                              })[0];
        memref::StoreOp::create(b2, l2, sum, dw, ValueRange{h, c});
      });
    });
  });
  rewriter.eraseOp(op);
  return success();
}
