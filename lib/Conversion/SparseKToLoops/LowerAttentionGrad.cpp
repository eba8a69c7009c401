//===- LowerAttentionGrad.cpp - Loop lowering of sparsek.attention_grad ---===//
//
// SPEC 5 "Backward", one query (b, hq, t) at a time, in two passes over the
// same key set Win(t) U Sel(t) as the forward lowering:
//   1. the forward softmax again (Softmax.h): its maximum m, normalizer l
//      and output o, whence Delta = <do, o> = sum_j a_j dP_j;
//   2. per key j: a_j = exp(s_j - m) / l, dPv_j = <do, v_j>,
//      ds_j = a_j (g_j dPv_j - Delta); dq += scale ds_j k_j,
//      dkey[j] += scale ds_j q, dvalue[j] += a_j g_j do and, for a selected
//      entry i, dgates[i] += a_j dPv_j.
// Nothing of the forward pass is saved: recomputing the softmax costs one
// more pass over the keys and no T x (k + w) memory. dkey, dvalue and dgates
// sum over queries and query heads, so they are zeroed first and
// accumulated in place (f32 destinations).
//
// The parallel (GPU) form runs one thread per query (b, hq, t), in blocks of
// queries as the forward does. Pass 1 carries only scalars: the online
// maximum and normalizer and, rescaled with them, sum_j e_j g_j dPv_j, so
// Delta needs no Dv-float row per thread. dq is the thread's own row;
// dkey, dvalue and dgates are sums over queries (and, for dgates, over the
// G heads of a group) and are added atomically. Atomics rather than a
// second pass over keys: a key with a high score is selected by up to T
// queries, so a per-key pass would walk a whole column on one thread (and
// leave most key threads idle), while here every thread's work is bounded
// by its k + w keys.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

#include "LoopUtils.h"
#include "ParallelKeyGrad.h"
#include "Softmax.h"
#include "TopKHeap.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// Run-time sizes of one sparsek.attention_grad (SPEC 1 names).
struct GradSizes {
  Value batch, hq, hkv, t, s, d, dv, k;
  Value group; // G = Hq / Hkv
};

/// One key of Win(t) U Sel(t): its position, gate and, for a selected key,
/// the slot of `indices` that lists it (null for window keys).
struct AttendedKey {
  Value j, gate, slot;
};

using KeyVisitor = function_ref<SmallVector<Value>(
    OpBuilder &, Location, const AttendedKey &, ValueRange carried)>;
} // namespace

/// Visits the keys that query t (position `pos`, KV head h) attends to, as
/// sparsek.attention does: the window with gate 1, then the entries of
/// indices[bi, h, t, :] in the candidate range 0 <= j <= pos - w (the rest
/// is padding or would double the window). Threads `init` through `visit`.
static SmallVector<Value> emitVisitAttended(OpBuilder &b, Location loc,
                                            AttentionGradOp op, Value bi,
                                            Value h, Value t, Value pos,
                                            Value kCount, ValueRange init,
                                            KeyVisitor visit) {
  int64_t w = op.getWAttr().getInt();
  Value zero = emitIndex(b, loc, 0);
  SmallVector<Value> carried(init);
  if (w > 0) {
    Value end = arith::AddIOp::create(b, loc, pos, emitIndex(b, loc, 1));
    Value start = arith::SubIOp::create(b, loc, end, emitIndex(b, loc, w));
    Value first = arith::MaxSIOp::create(b, loc, start, zero);
    Value one = emitF32(b, loc, 1.0);
    carried =
        emitForCarrying(b, loc, first, end, carried,
                        [&](OpBuilder &nb, Location nl, Value j, ValueRange c) {
                          return visit(nb, nl, AttendedKey{j, one, Value()}, c);
                        });
  }
  if (std::optional<int64_t> k = getConstantIntValue(kCount); k && *k == 0)
    return carried;
  Value lastCandidate =
      arith::SubIOp::create(b, loc, pos, emitIndex(b, loc, w));
  return emitForListedCandidates(
      b, loc, op.getIndices(), bi, h, t, kCount, lastCandidate, carried,
      [&](OpBuilder &nb, Location nl, Value j, Value i, ValueRange c) {
        Value gate = memref::LoadOp::create(nb, nl, op.getGates(),
                                            ValueRange{bi, h, t, i});
        return visit(nb, nl, AttendedKey{j, gate, i}, c);
      });
}

/// Checks what the verifier could not (dynamic sizes) and records failures
/// in the status word; returns the i1 that guards the computation.
static Value emitGradChecks(OpBuilder &b, Location loc, AttentionGradOp op,
                            GradSizes &z) {
  Value q = op.getQuery(), key = op.getKey(), value = op.getValue(),
        idx = op.getIndices(), gates = op.getGates(), dout = op.getGradOutput(),
        dq = op.getGradQueryInit(), dkey = op.getGradKeyInit(),
        dvalue = op.getGradValueInit(), dg = op.getGradGatesInit();
  Value groupOk;
  z.group = emitGroupSize(b, loc, z.hq, z.hkv, groupOk);
  SmallVector<DimPair> pairs = {
      {q, 0, key, 0},     {q, 0, value, 0}, {q, 0, idx, 0},
      {key, 1, value, 1}, {key, 1, idx, 1}, {q, 2, idx, 2},
      {key, 2, value, 2}, {q, 3, key, 3},
  };
  for (unsigned d = 0; d < 4; ++d) {
    if (d < 3) // grad_output is [B, Hq, T, Dv]
      pairs.push_back({q, d, dout, d});
    pairs.push_back({q, d, dq, d});
    pairs.push_back({key, d, dkey, d});
    pairs.push_back({value, d, dvalue, d});
    pairs.push_back({idx, d, gates, d});
    pairs.push_back({idx, d, dg, d});
  }
  pairs.push_back({value, 3, dout, 3});
  Value shapesOk = emitAnd(b, loc, {emitDimsAllEqual(b, loc, pairs), groupOk});
  Value ok = emitCheck(b, loc, op, shapesOk, SPARSEK_ERROR_SHAPE_MISMATCH);
  return emitAnd(b, loc, {ok, emitQueriesFitKeys(b, loc, op, z.t, z.s)});
}

namespace {
/// What a key j contributes to the backward of one query besides dq: its
/// attention weight a_j, dPv_j = <do, v_j> and scale ds_j.
struct KeyGrad {
  Value a, dPv, scaledDs;
};

using KeyGradSink = function_ref<void(OpBuilder &, Location,
                                      const AttendedKey &, const KeyGrad &)>;
} // namespace

/// Pass 2 of the backward of query (bi, hq, t) at position `pos`, KV head h,
/// from its softmax maximum `max`, normalizer `sum` and Delta: dq (the
/// query's own row) from zero, and each attended key's KeyGrad handed to
/// `sink` for dkey, dvalue and dgates.
static void emitKeyGrads(OpBuilder &b, Location loc, AttentionGradOp op,
                         const GradSizes &z, Value scale, Value bi, Value h,
                         Value hq, Value t, Value pos, Value max, Value sum,
                         Value delta, KeyGradSink sink) {
  Row query{op.getQuery(), {bi, hq, t}};
  Row dout{op.getGradOutput(), {bi, hq, t}};
  Row dq{op.getGradQueryInit(), {bi, hq, t}};
  emitFor(b, loc, emitIndex(b, loc, 0), z.d,
          [&](OpBuilder &nb, Location nl, Value c) {
            dq.storeF32(nb, nl, emitF32(nb, nl, 0.0), c);
          });
  emitVisitAttended(
      b, loc, op, bi, h, t, pos, z.k, {},
      [&](OpBuilder &nb, Location nl, const AttendedKey &at,
          ValueRange) -> SmallVector<Value> {
        Row keyRow{op.getKey(), {bi, h, at.j}};
        Value s = arith::MulFOp::create(nb, nl, scale,
                                        emitDotF32(nb, nl, query, keyRow, z.d));
        Value e =
            math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, s, max));
        Value a = arith::DivFOp::create(nb, nl, e, sum);
        Value dPv =
            emitDotF32(nb, nl, dout, Row{op.getValue(), {bi, h, at.j}}, z.dv);
        Value dP = arith::MulFOp::create(nb, nl, at.gate, dPv);
        Value ds = arith::MulFOp::create(
            nb, nl, a, arith::SubFOp::create(nb, nl, dP, delta));
        Value scaledDs = arith::MulFOp::create(nb, nl, scale, ds);
        emitAxpy(nb, nl, scaledDs, keyRow, dq, z.d);
        sink(nb, nl, at, KeyGrad{a, dPv, scaledDs});
        return {};
      });
}

/// The backward of one query (bi, hq, t) at position `pos`, KV head h.
static void emitQueryGrad(OpBuilder &b, Location loc, AttentionGradOp op,
                          const GradSizes &z, const SoftmaxAccumulator &acc,
                          Value scale, Value outRow, Value bi, Value h,
                          Value hq, Value t, Value pos) {
  Value key = op.getKey(), value = op.getValue();
  Row query{op.getQuery(), {bi, hq, t}};
  Row dout{op.getGradOutput(), {bi, hq, t}};
  auto keyRow = [&](Value j) { return Row{key, {bi, h, j}}; };
  auto valueRow = [&](Value j) { return Row{value, {bi, h, j}}; };

  // Pass 1: the forward softmax, for m, l and o.
  SoftmaxAccumulator::State st = acc.begin(b, loc, &query);
  st = SoftmaxAccumulator::State::from(emitVisitAttended(
      b, loc, op, bi, h, t, pos, z.k, st.values(),
      [&](OpBuilder &nb, Location nl, const AttendedKey &at,
          ValueRange carried) {
        return acc
            .add(nb, nl, SoftmaxAccumulator::State::from(carried), query,
                 keyRow(at.j), valueRow(at.j), at.gate)
            .values();
      }));
  acc.finish(b, loc, st, Row{outRow, {}});
  Value delta = emitDotF32(b, loc, dout, Row{outRow, {}}, z.dv);

  // Pass 2: dq (this query's row), dkey, dvalue, dgates.
  emitKeyGrads(
      b, loc, op, z, scale, bi, h, hq, t, pos, st.max, st.sum, delta,
      [&](OpBuilder &nb, Location nl, const AttendedKey &at, const KeyGrad &g) {
        emitAxpy(nb, nl, g.scaledDs, query,
                 Row{op.getGradKeyInit(), {bi, h, at.j}}, z.d);
        emitAxpy(nb, nl, arith::MulFOp::create(nb, nl, g.a, at.gate), dout,
                 Row{op.getGradValueInit(), {bi, h, at.j}}, z.dv);
        if (at.slot)
          emitAccumulate(nb, nl, op.getGradGatesInit(), {bi, h, t, at.slot},
                         arith::MulFOp::create(nb, nl, g.a, g.dPv));
      });
}

static void emitGradLoops(OpBuilder &b, Location loc, AttentionGradOp op,
                          const GradSizes &z) {
  for (Value dest :
       {op.getGradKeyInit(), op.getGradValueInit(), op.getGradGatesInit()})
    emitZeroFill(b, loc, dest);
  Value scale = emitAttentionScale(b, loc, op.getScale(), z.d);
  auto acc = SoftmaxAccumulator::create(b, loc, z.d, z.dv, scale);
  // The recomputed output row of one query, reused by every query.
  Value outRow = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()),
      ValueRange{z.dv});
  Value zero = emitIndex(b, loc, 0);
  Value firstPos = arith::SubIOp::create(b, loc, z.s, z.t);
  emitFor(b, loc, zero, z.batch, [&](OpBuilder &b1, Location l1, Value bi) {
    emitFor(b1, l1, zero, z.hkv, [&](OpBuilder &b2, Location l2, Value h) {
      emitFor(b2, l2, zero, z.t, [&](OpBuilder &b3, Location l3, Value t) {
        Value pos = arith::AddIOp::create(b3, l3, firstPos, t);
        emitFor(b3, l3, zero, z.group,
                [&](OpBuilder &b4, Location l4, Value g) {
                  Value hq = arith::AddIOp::create(
                      b4, l4, arith::MulIOp::create(b4, l4, h, z.group), g);
                  emitQueryGrad(b4, l4, op, z, acc, scale, outRow, bi, h, hq, t,
                                pos);
                });
      });
    });
  });
  memref::DeallocOp::create(b, loc, outRow);
  acc.release(b, loc);
}

/// The parallel form of emitQueryGrad (file comment): one query's backward
/// in its own thread.
/// With `lse` and `delta` (the key pass, ParallelKeyGrad.h), the query's
/// log-sum-exp and Delta are stored there and dkey and dvalue left to the
/// key pass.
static void emitParallelQueryGrad(OpBuilder &b, Location loc,
                                  AttentionGradOp op, const GradSizes &z,
                                  Value scale, Value bi, Value h, Value hq,
                                  Value t, Value pos, Value lse, Value delta) {
  Value key = op.getKey(), value = op.getValue();
  Row query{op.getQuery(), {bi, hq, t}};
  Row dout{op.getGradOutput(), {bi, hq, t}};
  auto keyRow = [&](Value j) { return Row{key, {bi, h, j}}; };
  auto valueRow = [&](Value j) { return Row{value, {bi, h, j}}; };
  auto score = [&](OpBuilder &nb, Location nl, Value j) {
    return arith::MulFOp::create(nb, nl, scale,
                                 emitDotF32(nb, nl, query, keyRow(j), z.d));
  };

  // Pass 1: m, l and D = sum_j exp(s_j - m) g_j dPv_j, online.
  Value negInf = emitF32(b, loc, -std::numeric_limits<double>::infinity());
  Value zeroF = emitF32(b, loc, 0.0);
  SmallVector<Value> stats = emitVisitAttended(
      b, loc, op, bi, h, t, pos, z.k, {negInf, zeroF, zeroF},
      [&](OpBuilder &nb, Location nl, const AttendedKey &at,
          ValueRange c) -> SmallVector<Value> {
        Value s = score(nb, nl, at.j);
        Value dPv = emitDotF32(nb, nl, dout, valueRow(at.j), z.dv);
        Value m = arith::MaximumFOp::create(nb, nl, c[0], s);
        Value rescale =
            math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, c[0], m));
        Value e =
            math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, s, m));
        Value l = arith::AddFOp::create(
            nb, nl, arith::MulFOp::create(nb, nl, c[1], rescale), e);
        Value term = arith::MulFOp::create(
            nb, nl, e, arith::MulFOp::create(nb, nl, at.gate, dPv));
        Value d = arith::AddFOp::create(
            nb, nl, arith::MulFOp::create(nb, nl, c[2], rescale), term);
        return {m, l, d};
      });
  Value max = stats[0], sum = stats[1];
  // With no key attended nothing below reads delta.
  Value deltaT = arith::DivFOp::create(b, loc, stats[2], sum);
  if (lse) {
    Value l =
        arith::AddFOp::create(b, loc, max, math::LogOp::create(b, loc, sum));
    memref::StoreOp::create(b, loc, l, lse, ValueRange{bi, hq, t});
    memref::StoreOp::create(b, loc, deltaT, delta, ValueRange{bi, hq, t});
  }

  // Pass 2: dq (this thread's row); dkey, dvalue, dgates atomically.
  emitKeyGrads(
      b, loc, op, z, scale, bi, h, hq, t, pos, max, sum, deltaT,
      [&](OpBuilder &nb, Location nl, const AttendedKey &at, const KeyGrad &g) {
        if (!lse) {
          emitAtomicAxpy(nb, nl, g.scaledDs, query,
                         Row{op.getGradKeyInit(), {bi, h, at.j}}, z.d);
          emitAtomicAxpy(nb, nl, arith::MulFOp::create(nb, nl, g.a, at.gate),
                         dout, Row{op.getGradValueInit(), {bi, h, at.j}}, z.dv);
        }
        if (at.slot)
          emitAtomicAdd(nb, nl, op.getGradGatesInit(), {bi, h, t, at.slot},
                        arith::MulFOp::create(nb, nl, g.a, g.dPv));
      });
}

/// `keyPass`: dkey and dvalue by the key pass (ParallelKeyGrad.h), which
/// needs indices made by sparsek.select; else atomically per query.
static void emitParallelGradLoops(OpBuilder &b, Location loc,
                                  AttentionGradOp op, const GradSizes &z,
                                  int64_t queryBlock, bool keyPass) {
  for (Value dest :
       {op.getGradKeyInit(), op.getGradValueInit(), op.getGradGatesInit()})
    emitParallelZeroFill(b, loc, dest, queryBlock);
  Value scale = emitAttentionScale(b, loc, op.getScale(), z.d);
  Value firstPos = arith::SubIOp::create(b, loc, z.s, z.t);
  Value lse, delta;
  if (keyPass) {
    auto type = MemRefType::get(
        {ShapedType::kDynamic, ShapedType::kDynamic, ShapedType::kDynamic},
        b.getF32Type());
    lse = memref::AllocOp::create(b, loc, type, ValueRange{z.batch, z.hq, z.t});
    delta =
        memref::AllocOp::create(b, loc, type, ValueRange{z.batch, z.hq, z.t});
  }
  emitParallelQueryBlocks(
      b, loc, z.batch, z.hq, z.t, queryBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value hq, Value t) {
        Value h = arith::DivUIOp::create(nb, nl, hq, z.group);
        Value pos = arith::AddIOp::create(nb, nl, firstPos, t);
        emitParallelQueryGrad(nb, nl, op, z, scale, bi, h, hq, t, pos, lse,
                              delta);
      });
  if (!keyPass)
    return;
  emitParallelKeyGrad(b, loc, op,
                      KeyGradShape{z.batch, z.hkv, z.t, z.s, z.k, z.group},
                      scale, lse, delta, queryBlock);
  memref::DeallocOp::create(b, loc, lse);
  memref::DeallocOp::create(b, loc, delta);
}

static LogicalResult lowerAttentionGrad(RewriterBase &rewriter,
                                        AttentionGradOp op,
                                        const LoopLoweringOptions &options,
                                        bool indicesFromSelect);

LogicalResult mlir::sparsek::lowerSelectedAttentionGradToLoops(
    RewriterBase &rewriter, AttentionGradOp op,
    const LoopLoweringOptions &options) {
  return lowerAttentionGrad(rewriter, op, options, /*indicesFromSelect=*/true);
}

LogicalResult
mlir::sparsek::lowerAttentionGradToLoops(RewriterBase &rewriter,
                                         AttentionGradOp op,
                                         const LoopLoweringOptions &options) {
  return lowerAttentionGrad(rewriter, op, options,
                            /*indicesFromSelect=*/false);
}

static LogicalResult lowerAttentionGrad(RewriterBase &rewriter,
                                        AttentionGradOp op,
                                        const LoopLoweringOptions &options,
                                        bool indicesFromSelect) {
  Location loc = op.getLoc();
  GradSizes z{emitDim(rewriter, loc, op.getQuery(), 0),
              emitDim(rewriter, loc, op.getQuery(), 1),
              emitDim(rewriter, loc, op.getKey(), 1),
              emitDim(rewriter, loc, op.getQuery(), 2),
              emitDim(rewriter, loc, op.getKey(), 2),
              emitDim(rewriter, loc, op.getQuery(), 3),
              emitDim(rewriter, loc, op.getValue(), 3),
              emitDim(rewriter, loc, op.getIndices(), 3),
              Value()};
  Value ok = emitGradChecks(rewriter, loc, op, z);
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    if (options.parallelLoops)
      emitParallelGradLoops(b, l, op, z, options.queryBlock,
                            indicesFromSelect && keyPassApplies(op));
    else
      emitGradLoops(b, l, op, z);
  });
  rewriter.eraseOp(op);
  return success();
}
