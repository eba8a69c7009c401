//===- LowerSelectAttention.cpp - Fused sparsek.select_attention ----------===//
//
// SPEC 7's fused form: the chunked selection (ChunkedSelection.h) computes
// per query tau(t) and theta(t), and per chunk its first query's selected
// positions; then every query (b, hq, t) runs one online softmax over its
// window and over Sel(t), which it reads as that list filtered by theta(t)
// plus the chunk's candidates up to its own last one. Indices and gates are
// never materialized per query: the extra memory is O(k) per chunk, not
// O(T k). The decomposed form (sparsek-decompose-select-attention) stays
// available; the pipelines choose with `fuse-select-attention`.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

#include "ChunkedSelection.h"
#include "FusedChecks.h"
#include "LoopUtils.h"
#include "Softmax.h"
#include "TauSolver.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace mlir::sparsek;

FusedSizes FusedSizes::read(OpBuilder &b, Location loc, SelectAttentionOp op) {
  return read(b, loc, op.getQuery(), op.getKey(), op.getValue());
}

FusedSizes FusedSizes::read(OpBuilder &b, Location loc, Value q, Value key,
                            Value value) {
  return {emitDim(b, loc, q, 0),     emitDim(b, loc, q, 1),
          emitDim(b, loc, key, 1),   emitDim(b, loc, q, 2),
          emitDim(b, loc, key, 2),   emitDim(b, loc, q, 3),
          emitDim(b, loc, value, 3), Value()};
}

Value mlir::sparsek::emitFusedChecks(OpBuilder &b, Location loc,
                                     SelectAttentionOp op, FusedSizes &z) {
  return emitFusedChecks(b, loc, op, op.getQuery(), op.getKey(), op.getValue(),
                         op.getScores(), op.getInit(), z);
}

Value mlir::sparsek::emitFusedChecks(OpBuilder &b, Location loc, Operation *op,
                                     Value q, Value key, Value value, Value u,
                                     Value out, FusedSizes &z) {
  Value groupOk;
  z.group = emitGroupSize(b, loc, z.hq, z.hkv, groupOk);
  Value shapesOk = emitAnd(b, loc,
                           {emitDimsAllEqual(b, loc,
                                             {{q, 0, key, 0},
                                              {q, 0, value, 0},
                                              {q, 0, u, 0},
                                              {q, 0, out, 0},
                                              {key, 1, value, 1},
                                              {key, 1, u, 1},
                                              {q, 1, out, 1},
                                              {q, 2, out, 2},
                                              {key, 2, value, 2},
                                              {key, 2, u, 2},
                                              {q, 3, key, 3},
                                              {value, 3, out, 3}}),
                            groupOk});
  Value ok = emitCheck(b, loc, op, shapesOk, SPARSEK_ERROR_SHAPE_MISMATCH);
  return emitAnd(b, loc, {ok, emitQueriesFitKeys(b, loc, op, z.t, z.s)});
}

/// Reports NaN and +inf scores of window-only positions [C, S) (never
/// candidates, so the selection never reads them): on the host, or with a
/// kernel in the parallel form (emitParallelScoreCheck).
void mlir::sparsek::emitCheckWindowScores(OpBuilder &b, Location loc,
                                          SelectAttentionOp op,
                                          const FusedSizes &z, int64_t w,
                                          bool inKernel) {
  emitCheckWindowScores(b, loc, op, op.getScores(), z, w, inKernel);
}

void mlir::sparsek::emitCheckWindowScores(OpBuilder &b, Location loc,
                                          Operation *op, Value u,
                                          const FusedSizes &z, int64_t w,
                                          bool inKernel) {
  Value zero = emitIndex(b, loc, 0);
  Value tail = arith::MinSIOp::create(b, loc, z.s, emitIndex(b, loc, w));
  Value from = arith::SubIOp::create(b, loc, z.s, tail);
  if (inKernel)
    return emitParallelScoreCheck(b, loc, op, u, from);
  emitFor(b, loc, zero, z.batch, [&](OpBuilder &b1, Location l1, Value bi) {
    emitFor(b1, l1, zero, z.hkv, [&](OpBuilder &b2, Location l2, Value h) {
      emitFor(b2, l2, from, z.s, [&](OpBuilder &b3, Location l3, Value j) {
        emitIsCandidateScore(
            b3, l3, op,
            memref::LoadOp::create(b3, l3, u, ValueRange{bi, h, j}));
      });
    });
  });
}

static void emitFused(OpBuilder &b, Location loc, SelectAttentionOp op,
                      const FusedSizes &z, const LoopLoweringOptions &options,
                      bool alignedRows) {
  int64_t k = op.getKAttr().getInt(), w = op.getWAttr().getInt();
  bool inKernel = options.parallelLoops;
  std::optional<ChunkedSelection> sel;
  Value lists;
  emitCheckWindowScores(b, loc, op, z, w, inKernel);
  if (k > 0) {
    sel.emplace(op, k, w, op.getScores(), z.t, inKernel, options.selectChunk);
    sel->emitSizes(b, loc);
    // Each chunk's first query's positions: O(min(k, S)) per chunk.
    lists = memref::AllocOp::create(
        b, loc,
        MemRefType::get(SmallVector<int64_t>(4, ShapedType::kDynamic),
                        b.getIndexType()),
        ValueRange{z.batch, z.hkv, sel->numChunks(), sel->listCapacity()});
    sel->emitThresholds(b, loc,
                        FirstLists{lists, [](OpBuilder &, Location, Value bi,
                                             Value h, Value chunk, Value) {
                                     return SmallVector<Value>{bi, h, chunk};
                                   }});
  }
  Value scale = emitAttentionScale(b, loc, op.getScale(), z.d);
  Value firstPos = arith::SubIOp::create(b, loc, z.s, z.t);
  emitParallelQueryBlocks(
      b, loc, z.batch, z.hq, z.t, options.queryBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value hq, Value t) {
        Value h = arith::DivUIOp::create(nb, nl, hq, z.group);
        auto acc = SoftmaxAccumulator::create(nb, nl, z.d, z.dv, scale,
                                              /*onStack=*/true, alignedRows);
        Value pos = arith::AddIOp::create(nb, nl, firstPos, t);
        Value key = op.getKey(), value = op.getValue();
        Row query{op.getQuery(), {bi, hq, t}};
        SoftmaxAccumulator::State st = acc.begin(nb, nl, &query);
        st = emitWindowKeys(nb, nl, acc, st, query, key, value, bi, h, pos, w);
        if (sel) {
          QueryPlace place = sel->emitPlace(nb, nl, t);
          Value tau = sel->emitTau(nb, nl, bi, h, t);
          st = SoftmaxAccumulator::State::from(sel->emitVisitSelected(
              nb, nl, bi, h, t, place, st.values(),
              [&](OpBuilder &vb, Location vl, Value j, Value score,
                  ValueRange carried) {
                return acc
                    .add(vb, vl, SoftmaxAccumulator::State::from(carried),
                         query, Row{key, {bi, h, j}}, Row{value, {bi, h, j}},
                         emitClipGate(vb, vl, score, tau))
                    .values();
              }));
        }
        acc.finish(nb, nl, st, Row{op.getInit(), {bi, hq, t}});
      });
  if (sel) {
    sel->emitDealloc(b, loc);
    memref::DeallocOp::create(b, loc, lists);
  }
}

LogicalResult
mlir::sparsek::lowerSelectAttentionToLoops(RewriterBase &rewriter,
                                           SelectAttentionOp op,
                                           const LoopLoweringOptions &options) {
  Location loc = op.getLoc();
  if (cast<ShapedType>(op.getValue().getType()).isDynamicDim(3))
    return op.emitOpError()
           << "needs a static value head dimension Dv for the fused "
              "lowering: its per-query scratch lives on the stack";
  FusedSizes z = FusedSizes::read(rewriter, loc, op);
  Value ok = emitFusedChecks(rewriter, loc, op, z);
  bool alignedRows = false;
  if (options.parallelLoops)
    ok = emitAnd(rewriter, loc,
                 {ok, emitRowAlignmentCheck(rewriter, loc, op,
                                            {op.getQuery(), op.getKey(),
                                             op.getValue(), op.getInit()},
                                            alignedRows)});
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    emitFused(b, l, op, z, options, alignedRows);
  });
  rewriter.eraseOp(op);
  return success();
}
