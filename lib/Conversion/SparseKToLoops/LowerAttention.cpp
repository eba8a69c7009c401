//===- LowerAttention.cpp - Loop lowering of sparsek.attention ------------===//
//
// For every batch b, KV head h, query t and query head hq = h * G + g of h's
// group, one online softmax (Softmax.h) visits the window keys
// max(0, pos - w + 1) .. pos with gate 1, then the entries of
// indices[b, h, t, :] that are candidates (0 <= j <= pos - w) with their
// gates; pos = S - T + t. No T x S intermediate: the only scratch is one
// row of Dv floats for the whole op.
//
// Entries outside the candidate range (padding -1, window or future
// positions) are skipped, which also keeps every read in bounds. Repeated
// entries are not merged: a position listed twice enters the softmax twice.
// SPEC 5 attends to a set and sparsek.select never repeats a position, so
// deduplicating (O(K) more work per query) would only serve malformed input.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

#include "LoopUtils.h"
#include "Softmax.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// Run-time sizes of one sparsek.attention (SPEC 1 names).
struct AttentionSizes {
  Value batch, hq, hkv, t, s, d, dv, k;
  Value group; // G = Hq / Hkv

  AttentionSizes(OpBuilder &b, Location loc, AttentionOp op)
      : batch(emitDim(b, loc, op.getQuery(), 0)),
        hq(emitDim(b, loc, op.getQuery(), 1)),
        hkv(emitDim(b, loc, op.getKey(), 1)),
        t(emitDim(b, loc, op.getQuery(), 2)),
        s(emitDim(b, loc, op.getKey(), 2)),
        d(emitDim(b, loc, op.getQuery(), 3)),
        dv(emitDim(b, loc, op.getValue(), 3)),
        k(emitDim(b, loc, op.getIndices(), 3)) {}
};
} // namespace

/// Checks what the verifier could not (dynamic sizes) and records failures
/// in the status word; returns the i1 that guards the computation.
static Value emitAttentionChecks(OpBuilder &b, Location loc, AttentionOp op,
                                 AttentionSizes &sizes) {
  Value q = op.getQuery(), key = op.getKey(), value = op.getValue(),
        idx = op.getIndices(), gates = op.getGates(), out = op.getInit();
  Value groupOk;
  sizes.group = emitGroupSize(b, loc, sizes.hq, sizes.hkv, groupOk);
  Value shapesOk = emitAnd(b, loc,
                           {emitDimsAllEqual(b, loc,
                                             {// B
                                              {q, 0, key, 0},
                                              {q, 0, value, 0},
                                              {q, 0, idx, 0},
                                              {q, 0, gates, 0},
                                              {q, 0, out, 0},
                                              // Hkv
                                              {key, 1, value, 1},
                                              {key, 1, idx, 1},
                                              {key, 1, gates, 1},
                                              // Hq
                                              {q, 1, out, 1},
                                              // T
                                              {q, 2, idx, 2},
                                              {q, 2, gates, 2},
                                              {q, 2, out, 2},
                                              // S, D, Dv, K
                                              {key, 2, value, 2},
                                              {q, 3, key, 3},
                                              {value, 3, out, 3},
                                              {idx, 3, gates, 3}}),
                            groupOk});
  Value ok = emitCheck(b, loc, op, shapesOk, SPARSEK_ERROR_SHAPE_MISMATCH);
  return emitAnd(b, loc,
                 {ok, emitQueriesFitKeys(b, loc, op, sizes.t, sizes.s)});
}

/// One query (b, hq, t) at position `pos`, attending through KV head h.
static void emitQuery(OpBuilder &b, Location loc, AttentionOp op,
                      const SoftmaxAccumulator &acc, Value bi, Value h,
                      Value hq, Value t, Value pos, Value kCount) {
  int64_t w = op.getWAttr().getInt();
  Value key = op.getKey(), value = op.getValue();
  Row query{op.getQuery(), {bi, hq, t}};
  SoftmaxAccumulator::State st = acc.begin(b, loc, &query);

  st = emitWindowKeys(b, loc, acc, st, query, key, value, bi, h, pos, w);

  // Selected entries that are candidates, 0 <= j <= pos - w; the rest is
  // padding or would double the window, and is ignored.
  if (std::optional<int64_t> k = getConstantIntValue(kCount); !k || *k > 0) {
    Value lastCandidate =
        arith::SubIOp::create(b, loc, pos, emitIndex(b, loc, w));
    Value zero = emitIndex(b, loc, 0);
    st = SoftmaxAccumulator::State::from(emitForCarrying(
        b, loc, zero, kCount, st.values(),
        [&](OpBuilder &nb, Location nl, Value i,
            ValueRange carried) -> SmallVector<Value> {
          Value j = emitLoadIndex(nb, nl, op.getIndices(), {bi, h, t, i});
          Value gate =
              memref::LoadOp::create(nb, nl, op.getGates(), {bi, h, t, i});
          Value valid = emitInRange(nb, nl, j, zero, lastCandidate);
          return acc
              .addIf(nb, nl, valid, SoftmaxAccumulator::State::from(carried),
                     query, Row{key, {bi, h, j}}, Row{value, {bi, h, j}}, gate)
              .values();
        }));
  }

  acc.finish(b, loc, st, Row{op.getInit(), {bi, hq, t}});
}

/// The loop nest over (b, h, t, g), run once the checks passed.
static void emitAttentionLoops(OpBuilder &b, Location loc, AttentionOp op,
                               const AttentionSizes &sizes) {
  Value scale = emitAttentionScale(b, loc, op.getScale(), sizes.d);
  auto acc = SoftmaxAccumulator::create(b, loc, sizes.d, sizes.dv, scale);
  Value zero = emitIndex(b, loc, 0);
  // Queries are the last T of the S positions.
  Value firstPos = arith::SubIOp::create(b, loc, sizes.s, sizes.t);
  emitFor(b, loc, zero, sizes.batch, [&](OpBuilder &b1, Location l1, Value bi) {
    emitFor(b1, l1, zero, sizes.hkv, [&](OpBuilder &b2, Location l2, Value h) {
      emitFor(b2, l2, zero, sizes.t, [&](OpBuilder &b3, Location l3, Value t) {
        Value pos = arith::AddIOp::create(b3, l3, firstPos, t);
        // The G query heads of KV head h read the same keys back to back.
        emitFor(b3, l3, zero, sizes.group,
                [&](OpBuilder &b4, Location l4, Value g) {
                  Value hq = arith::AddIOp::create(
                      b4, l4, arith::MulIOp::create(b4, l4, h, sizes.group), g);
                  emitQuery(b4, l4, op, acc, bi, h, hq, t, pos, sizes.k);
                });
      });
    });
  });
  acc.release(b, loc);
}

/// The parallel form of the nest (emitParallelQueryBlocks): blocks of
/// queries of one (b, hq), each query with its own stack scratch.
static void emitParallelAttentionLoops(OpBuilder &b, Location loc,
                                       AttentionOp op,
                                       const AttentionSizes &sizes,
                                       int64_t queryBlock, bool alignedRows) {
  Value scale = emitAttentionScale(b, loc, op.getScale(), sizes.d);
  Value firstPos = arith::SubIOp::create(b, loc, sizes.s, sizes.t);
  emitParallelQueryBlocks(
      b, loc, sizes.batch, sizes.hq, sizes.t, queryBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value hq, Value t) {
        Value h = arith::DivUIOp::create(nb, nl, hq, sizes.group);
        auto acc = SoftmaxAccumulator::create(nb, nl, sizes.d, sizes.dv, scale,
                                              /*onStack=*/true, alignedRows);
        Value pos = arith::AddIOp::create(nb, nl, firstPos, t);
        emitQuery(nb, nl, op, acc, bi, h, hq, t, pos, sizes.k);
      });
}

LogicalResult
mlir::sparsek::lowerAttentionToLoops(RewriterBase &rewriter, AttentionOp op,
                                     const LoopLoweringOptions &options) {
  Location loc = op.getLoc();
  if (options.parallelLoops &&
      cast<ShapedType>(op.getValue().getType()).isDynamicDim(3))
    return op.emitOpError()
           << "needs a static value head dimension Dv for the parallel (GPU) "
              "lowering: its per-query scratch lives on the stack";
  AttentionSizes sizes(rewriter, loc, op);
  Value ok = emitAttentionChecks(rewriter, loc, op, sizes);
  bool alignedRows = false;
  if (options.parallelLoops)
    ok = emitAnd(rewriter, loc,
                 {ok, emitRowAlignmentCheck(rewriter, loc, op,
                                            {op.getQuery(), op.getKey(),
                                             op.getValue(), op.getInit()},
                                            alignedRows)});
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location loc) {
    if (options.parallelLoops)
      emitParallelAttentionLoops(b, loc, op, sizes, options.queryBlock,
                                 alignedRows);
    else
      emitAttentionLoops(b, loc, op, sizes);
  });
  rewriter.eraseOp(op);
  return success();
}
