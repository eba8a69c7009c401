//===- ParallelKeyGrad.cpp - dkey and dvalue by a pass over keys ----------===//
//
// The parallel form of attention_grad adds each (query, key) pair's dkey and
// dvalue terms atomically from the query's thread. A key selected by many
// queries then takes one atomic add per query head and element from each of
// them, all to the same addresses. When the selection is the one
// sparsek.select makes (the composite select_attention_grad), the queries
// that attend to key j are known per key instead:
// - its window: the queries at positions j .. j + w - 1;
// - its selections: since Sel(t + 1) lies within Sel(t) plus the newest
//   candidate (SPEC 7), a key that leaves the selection never returns, so
//   the queries selecting j are one range [first candidate query, end_j),
//   and end_j is found by binary search over t (membership in a sorted
//   row of indices is itself a binary search).
// One thread per (b, h, chunk of kChunk queries, key j) then walks its
// chunk's part of those ranges for the G query heads, recomputing each
// pair's softmax weight from the query's saved log-sum-exp and Delta, and
// sums dkey[j] and dvalue[j] in registers (vectors of the static D and
// Dv); one atomic add per element and chunk is left (at most T / kChunk per
// key). No thread walks more than kChunk queries.
//
//===----------------------------------------------------------------------===//
#include "ParallelKeyGrad.h"

#include "LoopUtils.h"
#include "TopKHeap.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <tuple>

using namespace mlir;
using namespace mlir::sparsek;

/// Queries per thread of the key pass.
static constexpr int64_t kChunk = 256;

/// vector<n x f32> of a row's first n elements, widened to f32.
static Value loadRow(OpBuilder &b, Location loc, const Row &row, int64_t n) {
  Type elem = cast<MemRefType>(row.buf.getType()).getElementType();
  SmallVector<Value, 4> at(row.lead);
  at.push_back(emitIndex(b, loc, 0));
  Value v =
      vector::LoadOp::create(b, loc, VectorType::get({n}, elem), row.buf, at);
  if (elem.isF32())
    return v;
  return arith::ExtFOp::create(b, loc, VectorType::get({n}, b.getF32Type()), v);
}

static Value splat(OpBuilder &b, Location loc, Value scalar, int64_t n) {
  return vector::BroadcastOp::create(
      b, loc, VectorType::get({n}, scalar.getType()), scalar);
}

/// f32 sum of the elementwise product of two vectors (a tree: reassociated).
static Value dot(OpBuilder &b, Location loc, Value x, Value y) {
  return vector::ReductionOp::create(
      b, loc, vector::CombiningKind::ADD, arith::MulFOp::create(b, loc, x, y),
      /*acc=*/Value(), arith::FastMathFlags::reassoc);
}

/// The slot of position j in the ascending row indices[bi, h, t, 0..k) (its
/// -1 padding at the end), or k when j is not listed.
static Value emitFindSlot(OpBuilder &b, Location loc, Value indices, Value bi,
                          Value h, Value t, Value j, Value k) {
  Value zero = emitIndex(b, loc, 0);
  // Entries below j come first; padding (-1) sorts as "above" here.
  Value slot =
      emitFirstTrue(b, loc, zero, k, [&](OpBuilder &nb, Location nl, Value i) {
        Value e = emitLoadIndex(nb, nl, indices, {bi, h, t, i});
        Value pad =
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, e, zero);
        Value atLeast =
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, e, j);
        return arith::OrIOp::create(nb, nl, pad, atLeast).getResult();
      });
  Value inRow =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, slot, k);
  return emitIfElse(
      b, loc, inRow,
      [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
        Value e = emitLoadIndex(tb, tl, indices, {bi, h, t, slot});
        Value hit =
            arith::CmpIOp::create(tb, tl, arith::CmpIPredicate::eq, e, j);
        return {arith::SelectOp::create(tb, tl, hit, slot, k).getResult()};
      },
      [&](OpBuilder &, Location) -> SmallVector<Value> { return {k}; })[0];
}

bool mlir::sparsek::keyPassApplies(AttentionGradOp op) {
  auto d = cast<ShapedType>(op.getQuery().getType()).getShape().back();
  auto dv = cast<ShapedType>(op.getValue().getType()).getShape().back();
  return !ShapedType::isDynamic(d) && !ShapedType::isDynamic(dv) && d <= 1024 &&
         dv <= 1024;
}

void mlir::sparsek::emitParallelKeyGrad(OpBuilder &b, Location loc,
                                        AttentionGradOp op,
                                        const KeyGradShape &z, Value scale,
                                        Value lse, Value delta, int64_t block) {
  Value q = op.getQuery(), key = op.getKey(), value = op.getValue(),
        indices = op.getIndices(), gates = op.getGates(),
        dout = op.getGradOutput(), dkey = op.getGradKeyInit(),
        dvalue = op.getGradValueInit();
  int64_t w = op.getWAttr().getInt();
  int64_t d = cast<ShapedType>(q.getType()).getShape().back();
  int64_t dv = cast<ShapedType>(value.getType()).getShape().back();
  Value zero = emitIndex(b, loc, 0);
  // Query t sits at position (S - T) + t.
  Value offset = arith::SubIOp::create(b, loc, z.s, z.t);
  Value wIdx = emitIndex(b, loc, w);
  auto clampT = [&](OpBuilder &nb, Location nl, Value x) {
    return arith::MinSIOp::create(
        nb, nl, arith::MaxSIOp::create(nb, nl, x, emitIndex(nb, nl, 0)), z.t);
  };

  // end_j: the first query (from j's first candidate query on) that does
  // not select j.
  int64_t dyn = ShapedType::kDynamic;
  Value selEnd = memref::AllocOp::create(
      b, loc, MemRefType::get({dyn, dyn, dyn}, b.getI64Type()),
      ValueRange{z.batch, z.hkv, z.s});
  emitParallelBlocks(
      b, loc, {z.batch, z.hkv}, z.s, block,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value j) {
        Value bi = ivs[0], h = ivs[1];
        Value first =
            clampT(nb, nl,
                   arith::SubIOp::create(
                       nb, nl, arith::AddIOp::create(nb, nl, j, wIdx), offset));
        Value end = first;
        if (std::optional<int64_t> kc = getConstantIntValue(z.k);
            !kc || *kc > 0)
          end = emitFirstTrue(
              nb, nl, first, z.t, [&](OpBuilder &pb, Location pl, Value t) {
                Value slot = emitFindSlot(pb, pl, indices, bi, h, t, j, z.k);
                return arith::CmpIOp::create(pb, pl, arith::CmpIPredicate::eq,
                                             slot, z.k)
                    .getResult();
              });
        memref::StoreOp::create(
            nb, nl, arith::IndexCastOp::create(nb, nl, nb.getI64Type(), end),
            selEnd, ValueRange{bi, h, j});
      });

  Value chunk = emitIndex(b, loc, kChunk);
  Value chunks = arith::CeilDivUIOp::create(b, loc, z.t, chunk);
  Value rows = arith::MulIOp::create(b, loc, z.batch, z.hkv);
  emitParallelBlocks(
      b, loc, {rows, chunks}, z.s, block,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value j) {
        Value bi = arith::DivUIOp::create(nb, nl, ivs[0], z.hkv);
        Value h = arith::RemUIOp::create(nb, nl, ivs[0], z.hkv);
        Value lo = arith::MulIOp::create(nb, nl, ivs[1], chunk);
        Value hi = arith::MinUIOp::create(
            nb, nl, arith::AddIOp::create(nb, nl, lo, chunk), z.t);
        // Window queries: positions j .. j + w - 1; then the selections.
        Value winLo = clampT(nb, nl, arith::SubIOp::create(nb, nl, j, offset));
        Value winHi =
            clampT(nb, nl,
                   arith::SubIOp::create(
                       nb, nl, arith::AddIOp::create(nb, nl, j, wIdx), offset));
        Value selHi = arith::IndexCastOp::create(
            nb, nl, nb.getIndexType(),
            memref::LoadOp::create(nb, nl, selEnd, ValueRange{bi, h, j}));
        auto within = [&](Value a, Value c) {
          Value from = arith::MaxUIOp::create(nb, nl, a, lo);
          Value to = arith::MinUIOp::create(nb, nl, c, hi);
          return std::make_pair(
              from, arith::MaxUIOp::create(nb, nl, to, from).getResult());
        };
        auto win = within(winLo, winHi);
        auto sel = within(winHi, selHi);
        Value any = arith::OrIOp::create(
            nb, nl,
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult, win.first,
                                  win.second),
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult, sel.first,
                                  sel.second));
        emitIf(nb, nl, any, [&](OpBuilder &ib, Location il) {
          // The key's dkey and dvalue sums, carried in registers.
          Value kVec = loadRow(ib, il, Row{key, {bi, h, j}}, d);
          Value vVec = loadRow(ib, il, Row{value, {bi, h, j}}, dv);
          Value f0 = emitF32(ib, il, 0.0);
          SmallVector<Value> acc{splat(ib, il, f0, d), splat(ib, il, f0, dv)};
          // One (query, key) pair for every query head of the group.
          auto pair = [&](OpBuilder &pb, Location pl, Value t, Value gate,
                          ValueRange sums) {
            return emitForCarrying(
                pb, pl, zero, z.group, sums,
                [&](OpBuilder &gb, Location gl, Value g,
                    ValueRange c) -> SmallVector<Value> {
                  Value hq = arith::AddIOp::create(
                      gb, gl, arith::MulIOp::create(gb, gl, h, z.group), g);
                  Value qVec = loadRow(gb, gl, Row{q, {bi, hq, t}}, d);
                  Value doVec = loadRow(gb, gl, Row{dout, {bi, hq, t}}, dv);
                  Value s = arith::MulFOp::create(gb, gl, scale,
                                                  dot(gb, gl, qVec, kVec));
                  Value l = memref::LoadOp::create(gb, gl, lse,
                                                   ValueRange{bi, hq, t});
                  Value a = math::ExpOp::create(
                      gb, gl, arith::SubFOp::create(gb, gl, s, l));
                  Value dPv = dot(gb, gl, doVec, vVec);
                  Value del = memref::LoadOp::create(gb, gl, delta,
                                                     ValueRange{bi, hq, t});
                  Value ds = arith::MulFOp::create(
                      gb, gl, a,
                      arith::SubFOp::create(
                          gb, gl, arith::MulFOp::create(gb, gl, gate, dPv),
                          del));
                  Value fk = splat(gb, gl,
                                   arith::MulFOp::create(gb, gl, scale, ds), d);
                  Value fv =
                      splat(gb, gl, arith::MulFOp::create(gb, gl, a, gate), dv);
                  return {arith::AddFOp::create(
                              gb, gl, c[0],
                              arith::MulFOp::create(gb, gl, fk, qVec)),
                          arith::AddFOp::create(
                              gb, gl, c[1],
                              arith::MulFOp::create(gb, gl, fv, doVec))};
                });
          };
          Value gateOne = emitF32(ib, il, 1.0);
          acc = emitForCarrying(
              ib, il, win.first, win.second, acc,
              [&](OpBuilder &wb, Location wl, Value t, ValueRange c) {
                return pair(wb, wl, t, gateOne, c);
              });
          acc = emitForCarrying(
              ib, il, sel.first, sel.second, acc,
              [&](OpBuilder &sb, Location sl, Value t, ValueRange c) {
                Value slot = emitFindSlot(sb, sl, indices, bi, h, t, j, z.k);
                Value gate = memref::LoadOp::create(sb, sl, gates,
                                                    ValueRange{bi, h, t, slot});
                return pair(sb, sl, t, gate, c);
              });
          for (auto [sums, dest, n] : {std::make_tuple(acc[0], dkey, d),
                                       std::make_tuple(acc[1], dvalue, dv)})
            for (int64_t c = 0; c < n; ++c)
              emitAtomicAdd(ib, il, dest, {bi, h, j, emitIndex(ib, il, c)},
                            vector::ExtractOp::create(ib, il, sums, c));
        });
      });
  memref::DeallocOp::create(b, loc, selEnd);
}
