//===- ScalarGradTiles.cpp - The backward tile walk as plain loops --------===//
//
// The mma.sync backward kernel's algorithm (MmaSyncGradKernel.cpp) with
// scalar math, runnable on the CPU: per tile its key list (BlockKeys) in key
// tiles, per row (query, head) the two passes over them, pass 1 the online
// maximum, sum and Delta = <do, o>, pass 2 each member's gradients from
// P = exp(s - lse). Same slots, membership, gates (with the wgmma kernel's
// key tile classes), same decomposition of the score gradient (the selected
// support's own terms into du, the support sums for the mean term), so a
// CPU run checks them against the reference.
//
//===----------------------------------------------------------------------===//
#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"
#include "../SparseKToLoops/TopKHeap.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

static constexpr double kInf = std::numeric_limits<double>::infinity();

namespace {
/// A row's walk over its tile's key tiles.
struct GradRow {
  const ScalarRowSlots &sr;
  Value numTiles;

  /// `body(b, loc, valid, gate, s, jc, carried)` for every slot of every
  /// key tile, `tileStart(b, loc, tileSlots, carried)` first in each key
  /// tile (it may rewrite the carried values); returns the carried values.
  SmallVector<Value> walk(
      OpBuilder &b, Location loc, ValueRange init,
      function_ref<SmallVector<Value>(
          OpBuilder &, Location,
          function_ref<std::tuple<Value, Value, Value, Value>(OpBuilder &,
                                                              Location, Value)>,
          ValueRange)>
          tileStart,
      function_ref<SmallVector<Value>(OpBuilder &, Location, Value, Value,
                                      Value, Value, ValueRange)>
          body) const {
    Value zero = emitIndex(b, loc, 0), tileKeys = emitIndex(b, loc, kKeyTile);
    return emitForCarrying(
        b, loc, zero, numTiles, init,
        [&](OpBuilder &tb, Location tl, Value tile,
            ValueRange carried) -> SmallVector<Value> {
          Value base = arith::MulIOp::create(tb, tl, tile, tileKeys);
          KeyTileClass cls = KeyTileClass::emit(tb, tl, sr.keys, base, sr.w);
          auto slotAt = [&](OpBuilder &sb, Location sl, Value c) {
            return sr.slot(sb, sl, arith::AddIOp::create(sb, sl, base, c), cls);
          };
          SmallVector<Value> start = tileStart(tb, tl, slotAt, carried);
          return emitForCarrying(tb, tl, zero, tileKeys, start,
                                 [&](OpBuilder &sb, Location sl, Value c,
                                     ValueRange acc) -> SmallVector<Value> {
                                   auto [valid, gate, s, jc] =
                                       slotAt(sb, sl, c);
                                   return body(sb, sl, valid, gate, s, jc, acc);
                                 });
        });
  }
};
} // namespace

void sparsek::emitScalarGradTiles(OpBuilder &b, Location loc,
                                  const GradTileProblem &p) {
  SelectAttentionGradOp op = p.op;
  const FusedSizes &z = p.sizes;
  bool selects = static_cast<bool>(p.keys);
  Value zero = emitIndex(b, loc, 0);
  Value dqAcc = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()),
      ValueRange{z.d});
  auto f = [](OpBuilder &nb, Location nl, double v) {
    return emitF32(nb, nl, v);
  };
  emitScalarTileRows(
      b, loc, z, p.geo, p.keys, op.getQuery(), op.getKey(), op.getScores(), p.k,
      p.w, p.scale,
      [&](OpBuilder &b2, Location l2, const ScalarRowSlots &sr,
          Value numTiles) {
        Value bi = sr.bi, h = sr.h, hq = sr.hq;
        GradRow walk{sr, numTiles};
        Row gradOut{op.getGradOutput(), {bi, hq, sr.t}};
        auto dpvOf =
            [&](OpBuilder &nb, Location nl, Value jc) {
              return emitDotF32(nb, nl, gradOut,
                                Row{op.getValue(), {bi, h, jc}}, z.dv);
            };

        // Pass 1: (m, l, Delta l) online, each key tile rescaling to its
        // new maximum before its terms are added.
        SmallVector<Value> stats =
            walk.walk(
                b2, l2,
                ValueRange{f(b2, l2, -kInf), f(b2, l2, 0.0), f(b2, l2, 0.0)},
                [&](OpBuilder &tb, Location tl, auto slotAt,
                    ValueRange c) -> SmallVector<Value> {
                  Value tileMax = emitForCarrying(
                      tb, tl, zero, emitIndex(tb, tl, kKeyTile),
                      ValueRange{f(tb, tl, -kInf)},
                      [&](OpBuilder &mb, Location ml, Value i,
                          ValueRange m) -> SmallVector<Value> {
                        Value s = std::get<2>(slotAt(mb, ml, i));
                        return {arith::MaxNumFOp::create(mb, ml, m[0], s)};
                      })[0];
                  Value mNew = arith::MaxNumFOp::create(tb, tl, c[0], tileMax);
                  Value none =
                      arith::CmpFOp::create(tb, tl, arith::CmpFPredicate::OEQ,
                                            mNew, f(tb, tl, -kInf));
                  Value mUse = arith::SelectOp::create(tb, tl, none,
                                                       f(tb, tl, 0.0), mNew);
                  Value alpha = math::ExpOp::create(
                      tb, tl, arith::SubFOp::create(tb, tl, c[0], mUse));
                  return {mNew, arith::MulFOp::create(tb, tl, c[1], alpha),
                          arith::MulFOp::create(tb, tl, c[2], alpha)};
                },
                [&](OpBuilder &sb, Location sl, Value valid, Value gate,
                    Value s, Value jc, ValueRange c) -> SmallVector<Value> {
                  Value mUse = arith::SelectOp::create(
                      sb, sl,
                      arith::CmpFOp::create(sb, sl, arith::CmpFPredicate::OEQ,
                                            c[0], f(sb, sl, -kInf)),
                      f(sb, sl, 0.0), c[0]);
                  Value pe = math::ExpOp::create(
                      sb, sl, arith::SubFOp::create(sb, sl, s, mUse));
                  Value l = arith::AddFOp::create(sb, sl, c[1], pe);
                  Value dl = emitIfElse(
                      sb, sl, valid,
                      [&](OpBuilder &vb, Location vl) -> SmallVector<Value> {
                        Value term = arith::MulFOp::create(
                            vb, vl, arith::MulFOp::create(vb, vl, pe, gate),
                            dpvOf(vb, vl, jc));
                        return {arith::AddFOp::create(vb, vl, c[2], term)};
                      },
                      [&](OpBuilder &, Location) -> SmallVector<Value> {
                        return {c[2]};
                      })[0];
                  return {c[0], l, dl};
                });
        Value any = arith::CmpFOp::create(b2, l2, arith::CmpFPredicate::OGT,
                                          stats[1], f(b2, l2, 0.0));
        Value safeL =
            arith::SelectOp::create(b2, l2, any, stats[1], f(b2, l2, 1.0));
        Value lse = arith::SelectOp::create(
            b2, l2, any,
            arith::AddFOp::create(b2, l2, stats[0],
                                  math::LogOp::create(b2, l2, safeL)),
            f(b2, l2, 0.0));
        Value delta = arith::SelectOp::create(
            b2, l2, any, arith::DivFOp::create(b2, l2, stats[2], safeL),
            f(b2, l2, 0.0));

        // Pass 2: each member's gradients; the row's support sum carried.
        emitFor(b2, l2, zero, z.d, [&](OpBuilder &fb, Location fl, Value i) {
          memref::StoreOp::create(fb, fl, f(fb, fl, 0.0), dqAcc, i);
        });
        Row qRow{op.getQuery(), {bi, hq, sr.t}}, acc{dqAcc, {}};
        Value supportSum =
            walk.walk(
                b2, l2, ValueRange{f(b2, l2, 0.0)},
                [](OpBuilder &, Location, auto, ValueRange c) {
                  return SmallVector<Value>(c.begin(), c.end());
                },
                [&](OpBuilder &sb, Location sl, Value valid, Value gate,
                    Value s, Value jc, ValueRange c) -> SmallVector<Value> {
                  return emitIfElse(
                      sb, sl, valid,
                      [&](OpBuilder &vb, Location vl) -> SmallVector<Value> {
                        Value pr = math::ExpOp::create(
                            vb, vl, arith::SubFOp::create(vb, vl, s, lse));
                        Value dpv = dpvOf(vb, vl, jc);
                        Value dP = arith::MulFOp::create(vb, vl, gate, dpv);
                        Value ds = arith::MulFOp::create(
                            vb, vl, pr,
                            arith::SubFOp::create(vb, vl, dP, delta));
                        emitAxpy(vb, vl, ds, Row{op.getKey(), {bi, h, jc}}, acc,
                                 z.d);
                        emitAxpy(
                            vb, vl, arith::MulFOp::create(vb, vl, ds, p.scale),
                            qRow, Row{op.getGradKeyInit(), {bi, h, jc}}, z.d);
                        emitAxpy(vb, vl,
                                 arith::MulFOp::create(vb, vl, pr, gate),
                                 gradOut,
                                 Row{op.getGradValueInit(), {bi, h, jc}}, z.dv);
                        if (!selects)
                          return {c[0]};
                        // The selected support (0 < gate < 1: window gates are
                        // 1).
                        Value inSupport = arith::AndIOp::create(
                            vb, vl,
                            arith::CmpFOp::create(vb, vl,
                                                  arith::CmpFPredicate::OGT,
                                                  gate, f(vb, vl, 0.0)),
                            arith::CmpFOp::create(vb, vl,
                                                  arith::CmpFPredicate::OLT,
                                                  gate, f(vb, vl, 1.0)));
                        Value dg = arith::SelectOp::create(
                            vb, vl, inSupport,
                            arith::MulFOp::create(vb, vl, pr, dpv),
                            f(vb, vl, 0.0));
                        emitAccumulate(vb, vl, op.getGradScoresInit(),
                                       ValueRange{bi, h, jc}, dg);
                        return {arith::AddFOp::create(vb, vl, c[0], dg)};
                      },
                      [&](OpBuilder &, Location) -> SmallVector<Value> {
                        return {c[0]};
                      });
                })[0];
        Row dq{op.getGradQueryInit(), {bi, hq, sr.t}};
        emitFor(b2, l2, zero, z.d, [&](OpBuilder &fb, Location fl, Value i) {
          Value v = memref::LoadOp::create(fb, fl, dqAcc, i);
          dq.storeF32(fb, fl, arith::MulFOp::create(fb, fl, v, p.scale), i);
        });
        if (selects)
          emitAccumulate(b2, l2, p.supportSums, ValueRange{bi, h, sr.t},
                         supportSum);
      });
  memref::DeallocOp::create(b, loc, dqAcc);
}
