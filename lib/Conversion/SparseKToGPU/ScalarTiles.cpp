//===- ScalarTiles.cpp - The tile walk of select_attention as plain loops -===//
//
// The mma.sync kernel's algorithm with scalar math: per tile (batch, KV
// head, head split, query block) its key list (BlockKeys) in key tiles of
// kKeyTile slots; per row (query, head) and key tile the row maximum over
// the tile's members, the rescale of the running sum and accumulator, then
// the tile's exponentials, gated values added (SPEC 5: gates scale the
// values, not the sum). Same slots, same membership test, same per-tile
// softmax updates as the kernel's registers hold, so a CPU run checks them;
// membership and gates take the wgmma kernel's per-key-tile shortcuts
// (KeyTileClass), so the CPU checks those too.
//
//===----------------------------------------------------------------------===//
#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

static constexpr double kInf = std::numeric_limits<double>::infinity();

std::tuple<Value, Value, Value, Value>
ScalarRowSlots::slot(OpBuilder &b, Location loc, Value i,
                     const KeyTileClass &cls) const {
  Value j = keys.emitKeyAt(b, loc, i, lists, ValueRange{r, listRow}, k);
  Value jc = arith::MaxSIOp::create(b, loc, j, emitIndex(b, loc, 0));
  Value u = memref::LoadOp::create(b, loc, scores, ValueRange{bi, h, jc});
  Value valid = cls.emitIsMember(b, loc, th, j, u, w, k > 0);
  Value gate = cls.emitGate(b, loc, th, j, u, w, k > 0);
  // s where valid, else -inf (no dot product for masked slots).
  auto ifOp = scf::IfOp::create(
      b, loc, valid,
      [&](OpBuilder &tb, Location tl) {
        Value dot =
            emitDotF32(tb, tl, Row{q, {bi, hq, t}}, Row{key, {bi, h, jc}}, d);
        scf::YieldOp::create(
            tb, tl, arith::MulFOp::create(tb, tl, dot, scale).getResult());
      },
      [&](OpBuilder &eb, Location el) {
        scf::YieldOp::create(eb, el, emitF32(eb, el, -kInf));
      });
  return {valid, gate, ifOp.getResult(0), jc};
}

void sparsek::emitScalarTileRows(
    OpBuilder &b, Location loc, const FusedSizes &z, const TileGeometry &geo,
    const std::optional<BlockKeySets> &sets, Value q, Value key, Value scores,
    int64_t k, int64_t w, Value scale,
    function_ref<void(OpBuilder &, Location, const ScalarRowSlots &, Value)>
        body) {
  Value zero = emitIndex(b, loc, 0);
  Value firstPos = arith::SubIOp::create(b, loc, z.s, z.t);
  auto loops = [&](OpBuilder &b0, Location l0, Value bi, Value h, Value split,
                   Value blk) {
    Value r = arith::AddIOp::create(
        b0, l0, arith::MulIOp::create(b0, l0, bi, z.hkv), h);
    Value t0 = arith::MulIOp::create(b0, l0, blk, geo.blockQueries);
    // Without selection there is no list, and the range starts at t0's
    // window.
    Value list = geo.emitListOf(b0, l0, blk);
    Value count =
        sets ? emitLoadIndex(b0, l0, sets->counts, ValueRange{r, list}) : zero;
    Value ta = sets ? geo.emitListQuery(b0, l0, list) : t0;
    BlockKeys keys =
        BlockKeys::emit(b0, l0, count, t0, ta, geo.blockQueries, z.t, z.s, w);
    Value numTiles = arith::DivUIOp::create(
        b0, l0,
        arith::AddIOp::create(b0, l0, keys.length,
                              emitIndex(b0, l0, kKeyTile - 1)),
        emitIndex(b0, l0, kKeyTile));
    emitFor(
        b0, l0, zero, emitIndex(b0, l0, geo.rows),
        [&](OpBuilder &b1, Location l1, Value row) {
          TileRow tr = emitTileRow(b1, l1, row, t0, split, geo.headsPerTile,
                                   geo.group, geo.blockQueries, z.t);
          emitIf(b1, l1, tr.valid, [&](OpBuilder &b2, Location l2) {
            Value hq = arith::AddIOp::create(
                b2, l2, arith::MulIOp::create(b2, l2, h, geo.group), tr.qhead);
            Value pos = arith::AddIOp::create(b2, l2, firstPos, tr.query);
            QueryThresholds th{tr.valid, pos, Value(), Value(), Value()};
            if (sets)
              th =
                  sets->thresholds.emitLoad(b2, l2, r, tr.query, tr.valid, pos);
            ScalarRowSlots sr{q,  key,  scores, sets ? sets->lists : Value(),
                              k,  w,    z.d,    scale,
                              bi, h,    hq,     tr.query,
                              r,  list, th,     keys};
            body(b2, l2, sr, numTiles);
          });
        });
  };
  emitFor(b, loc, zero, z.batch, [&](OpBuilder &b1, Location l1, Value bi) {
    emitFor(b1, l1, zero, z.hkv, [&](OpBuilder &b2, Location l2, Value h) {
      emitFor(b2, l2, zero, geo.headSplits,
              [&](OpBuilder &b3, Location l3, Value split) {
                emitFor(b3, l3, zero, geo.numBlocks,
                        [&](OpBuilder &b4, Location l4, Value blk) {
                          loops(b4, l4, bi, h, split, blk);
                        });
              });
    });
  });
}

void sparsek::emitScalarTiles(OpBuilder &b, Location loc,
                              const TileProblem &p) {
  SelectAttentionOp op = p.op;
  const FusedSizes &z = p.sizes;
  Value zero = emitIndex(b, loc, 0);
  Value tileKeys = emitIndex(b, loc, kKeyTile);
  Value acc = memref::AllocOp::create(
      b, loc, MemRefType::get({ShapedType::kDynamic}, b.getF32Type()),
      ValueRange{z.dv});
  emitScalarTileRows(
      b, loc, z, p.geo, p.keys, op.getQuery(), op.getKey(), op.getScores(), p.k,
      p.w, p.scale,
      [&](OpBuilder &b2, Location l2, const ScalarRowSlots &sr,
          Value numTiles) {
        Value bi = sr.bi, h = sr.h, hq = sr.hq;
        emitFor(b2, l2, zero, z.dv, [&](OpBuilder &fb, Location fl, Value d) {
          memref::StoreOp::create(fb, fl, emitF32(fb, fl, 0.0), acc, d);
        });
        SmallVector<Value> ml =
            emitForCarrying(
                b2, l2, zero, numTiles,
                ValueRange{emitF32(b2, l2, -kInf), emitF32(b2, l2, 0.0)},
                [&](OpBuilder &b3, Location l3, Value tile,
                    ValueRange carried) -> SmallVector<Value> {
                  Value base = arith::MulIOp::create(b3, l3, tile, tileKeys);
                  KeyTileClass cls =
                      KeyTileClass::emit(b3, l3, sr.keys, base, p.w);
                  auto slotAt = [&](OpBuilder &sb, Location sl, Value c) {
                    return sr.slot(sb, sl,
                                   arith::AddIOp::create(sb, sl, base, c), cls);
                  };
                  // The tile's row maximum over its members.
                  Value tileMax = emitForCarrying(
                      b3, l3, zero, tileKeys,
                      ValueRange{emitF32(b3, l3, -kInf)},
                      [&](OpBuilder &fb, Location fl, Value c,
                          ValueRange m) -> SmallVector<Value> {
                        Value s = std::get<2>(slotAt(fb, fl, c));
                        return {arith::MaxNumFOp::create(fb, fl, m[0], s)};
                      })[0];
                  Value mNew =
                      arith::MaxNumFOp::create(b3, l3, carried[0], tileMax);
                  // No member yet: exponents against 0 give exp(-inf) = 0.
                  Value none =
                      arith::CmpFOp::create(b3, l3, arith::CmpFPredicate::OEQ,
                                            mNew, emitF32(b3, l3, -kInf));
                  Value mUse = arith::SelectOp::create(
                      b3, l3, none, emitF32(b3, l3, 0.0), mNew);
                  Value alpha = math::ExpOp::create(
                      b3, l3, arith::SubFOp::create(b3, l3, carried[0], mUse));
                  emitFor(b3, l3, zero, z.dv,
                          [&](OpBuilder &fb, Location fl, Value d) {
                            Value a = memref::LoadOp::create(fb, fl, acc, d);
                            memref::StoreOp::create(
                                fb, fl, arith::MulFOp::create(fb, fl, a, alpha),
                                acc, d);
                          });
                  Value l0 = arith::MulFOp::create(b3, l3, carried[1], alpha);
                  Value lNew = emitForCarrying(
                      b3, l3, zero, tileKeys, ValueRange{l0},
                      [&](OpBuilder &fb, Location fl, Value c,
                          ValueRange l) -> SmallVector<Value> {
                        auto [valid, gate, s, jc] = slotAt(fb, fl, c);
                        Value pe = math::ExpOp::create(
                            fb, fl, arith::SubFOp::create(fb, fl, s, mUse));
                        Value pg = arith::MulFOp::create(fb, fl, pe, gate);
                        emitIf(fb, fl, valid, [&](OpBuilder &vb, Location vl) {
                          Row v{op.getValue(), {bi, h, jc}};
                          emitFor(vb, vl, zero, z.dv,
                                  [&](OpBuilder &db, Location dl, Value d) {
                                    Value a =
                                        memref::LoadOp::create(db, dl, acc, d);
                                    Value x = arith::MulFOp::create(
                                        db, dl, pg, v.loadF32(db, dl, d));
                                    memref::StoreOp::create(
                                        db, dl,
                                        arith::AddFOp::create(db, dl, a, x),
                                        acc, d);
                                  });
                        });
                        return {arith::AddFOp::create(fb, fl, l[0], pe)};
                      })[0];
                  return {mNew, lNew};
                });
        // out = acc / l, 0 where the row had no member (SPEC 5).
        Value lSum = ml[1];
        Value any = arith::CmpFOp::create(b2, l2, arith::CmpFPredicate::OGT,
                                          lSum, emitF32(b2, l2, 0.0));
        Value inv = arith::SelectOp::create(
            b2, l2, any,
            arith::DivFOp::create(b2, l2, emitF32(b2, l2, 1.0), lSum),
            emitF32(b2, l2, 0.0));
        Row out{op.getInit(), {bi, hq, sr.t}};
        emitFor(b2, l2, zero, z.dv, [&](OpBuilder &fb, Location fl, Value d) {
          Value a = memref::LoadOp::create(fb, fl, acc, d);
          out.storeF32(fb, fl, arith::MulFOp::create(fb, fl, a, inv), d);
        });
      });
  memref::DeallocOp::create(b, loc, acc);
}
