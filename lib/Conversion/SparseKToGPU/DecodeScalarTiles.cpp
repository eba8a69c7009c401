//===- DecodeScalarTiles.cpp - The decode walk as sequential loops --------===//
//
// The kernel's walk (DecodeTiles.h) with scalar math, for the CPU: per
// (sequence, KV head, split) and query head, one online softmax per lane
// row class (warp, lane / C) over exactly the slots that class reads in the
// kernel, the classes merged into the block's state, then the block's
// output or its partial state, and the split merge by the last split to
// arrive at the (b, h) counter (a host global, reset by that split). Same
// split count, slot numbering, gates, checks and merge weights as the
// kernel, so a CPU run checks them against the reference; its reports go
// through the device status (on the CPU, the host status word), at the
// kernel's check points, with the loop form's codes.
//
//===----------------------------------------------------------------------===//
#include "DecodeTiles.h"
#include "KernelMath.h"

#include "../SparseKToLoops/LoopUtils.h"
#include "../SparseKToLoops/TopKHeap.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// A softmax state: max and sum carried as values, the output in `acc`.
struct State {
  Value m, l;
};
} // namespace

/// acc *= factor over [0, d).
static void emitScale(OpBuilder &b, Location loc, Value acc, Value factor,
                      int64_t d) {
  emitFor(b, loc, emitIndex(b, loc, 0), emitIndex(b, loc, d),
          [&](OpBuilder &fb, Location fl, Value e) {
            Value a = memref::LoadOp::create(fb, fl, acc, e);
            memref::StoreOp::create(
                fb, fl, arith::MulFOp::create(fb, fl, a, factor), acc, e);
          });
}

/// The state (m, l, acc) after merging (m2, l2, acc2) into it.
static State emitMerge(OpBuilder &b, Location loc, State s, Value acc, State o,
                       Value acc2, int64_t d) {
  KernelMath x{b, loc};
  MergeWeights mw = emitMergeWeights(b, loc, s.m, o.m);
  emitFor(b, loc, x.c(0), x.c(d), [&](OpBuilder &fb, Location fl, Value e) {
    KernelMath z{fb, fl};
    Value a = memref::LoadOp::create(fb, fl, acc, e);
    Value a2 = memref::LoadOp::create(fb, fl, acc2, e);
    memref::StoreOp::create(
        fb, fl, z.fadd(z.fmul(a, mw.first), z.fmul(a2, mw.second)), acc, e);
  });
  return {mw.max, x.fadd(x.fmul(s.l, mw.first), x.fmul(o.l, mw.second))};
}

static void emitZero(OpBuilder &b, Location loc, Value acc, int64_t d) {
  emitFor(b, loc, emitIndex(b, loc, 0), emitIndex(b, loc, d),
          [&](OpBuilder &fb, Location fl, Value e) {
            memref::StoreOp::create(fb, fl, emitF32(fb, fl, 0.0), acc, e);
          });
}

void sparsek::emitDecodeScalarTiles(OpBuilder &b, Location loc,
                                    const DecodeTileProblem &p, Value group,
                                    StringRef counters, bool mma) {
  const DecodeOperands &ops = p.ops;
  int64_t k = p.k, w = p.w, d = p.d;
  KernelMath x{b, loc};
  // The walk's lane layout is the kernel's for D (and its register budget
  // for G: fewer loads per lane with 8 heads), whatever the element type.
  Value batch = p.batch, hkv = p.hkv;
  auto accType = MemRefType::get({d}, b.getF32Type());
  Value blockAcc = memref::AllocaOp::create(b, loc, accType);
  Value classAcc = memref::AllocaOp::create(b, loc, accType);
  Value log2Scale = emitLog2Scale(b, loc, p.op, d);
  Value multi = x.lt(x.c(1), p.splits);
  auto counterGlobal = cast<memref::GlobalOp>(
      SymbolTable::lookupSymbolIn(p.op->getParentOfType<ModuleOp>(), counters));

  auto walkBlock = [&](OpBuilder &b0, Location l0, Value bi, Value h,
                       Value split, int64_t chunks) {
    KernelMath y{b0, l0};
    Value r = y.add(y.mul(bi, hkv), h);
    DecodeGeometry geo = DecodeGeometry::get(d, 1, mma);
    geo.chunksPerLane = chunks;
    DecodeSplitRange range =
        DecodeSplitRange::emit(b0, l0, ops, k, w, bi, h, split, p.splits);
    Value yes = emitBool(b0, l0, true);
    auto okUnless = [&](OpBuilder &ob, Location ol, Value bad) {
      return arith::XOrIOp::create(ob, ol, bad, yes).getResult();
    };
    emitDeviceCheck(b0, l0, p.op, okUnless(b0, l0, range.badState),
                    SPARSEK_ERROR_INVALID_CACHE_STATE);
    emitDeviceCheck(b0, l0, p.op, okUnless(b0, l0, range.badTau),
                    SPARSEK_ERROR_INVALID_SCORE);
    Value tau = range.tau;
    Value iters = emitWalkIterations(b0, l0, geo, range.lo, range.hi);
    Value partRow = y.add(y.mul(r, p.splits), split);
    emitFor(b0, l0, y.c(0), group, [&](OpBuilder &b1, Location l1, Value g) {
      KernelMath z{b1, l1};
      Value hq = z.add(z.mul(h, group), g);
      emitZero(b1, l1, blockAcc, d);
      State block{z.negInf(), z.f(0.0)};
      for (int64_t warp = 0; warp < kDecodeWarps; ++warp)
        for (int64_t rc = 0; rc < geo.rowsPerLoad; ++rc) {
          emitZero(b1, l1, classAcc, d);
          SmallVector<Value> ml = emitForCarrying(
              b1, l1, z.c(0), iters, ValueRange{z.negInf(), z.f(0.0)},
              [&](OpBuilder &b2, Location l2, Value it,
                  ValueRange carried) -> SmallVector<Value> {
                SmallVector<Value> cur(carried);
                for (int64_t c = 0; c < chunks; ++c) {
                  KernelMath u{b2, l2};
                  Value v = emitWalkSlot(b2, l2, geo, range.lo, it, u.c(warp),
                                         c, u.c(rc));
                  Value slot = range.emitSlot(b2, l2, v, k);
                  cur = emitIfElse(
                      b2, l2, u.lt(v, range.hi),
                      [&](OpBuilder &b3, Location l3) -> SmallVector<Value> {
                        auto [counts, gate] = emitSlotGate(
                            b3, l3, ops, k, range, v, bi, h, slot, tau);
                        // A skipped pool slot: its score is invalid.
                        emitDeviceCheck(b3, l3, p.op, counts,
                                        SPARSEK_ERROR_INVALID_SCORE);
                        return emitIfElse(
                            b3, l3, counts,
                            [&](OpBuilder &b4,
                                Location l4) -> SmallVector<Value> {
                              KernelMath t{b4, l4};
                              Value s = t.fmul(
                                  emitDotF32(b4, l4, Row{ops.q, {bi, hq}},
                                             Row{ops.key, {bi, h, slot}},
                                             t.c(d)),
                                  log2Scale);
                              MergeWeights mw =
                                  emitMergeWeights(b4, l4, cur[0], s);
                              emitScale(b4, l4, classAcc, mw.first, d);
                              emitAxpy(b4, l4, t.fmul(mw.second, gate),
                                       Row{ops.value, {bi, h, slot}},
                                       Row{classAcc, {}}, t.c(d));
                              return {mw.max, t.fadd(t.fmul(cur[1], mw.first),
                                                     mw.second)};
                            },
                            [&](OpBuilder &, Location) {
                              return SmallVector<Value>(cur);
                            });
                      },
                      [&](OpBuilder &, Location) {
                        return SmallVector<Value>(cur);
                      });
                }
                return cur;
              });
          block = emitMerge(b1, l1, block, blockAcc, State{ml[0], ml[1]},
                            classAcc, d);
        }
      auto ifOp = scf::IfOp::create(b1, l1, multi, /*withElse=*/true);
      {
        OpBuilder tb = ifOp.getThenBodyBuilder();
        KernelMath t{tb, l1};
        emitFor(tb, l1, t.c(0), t.c(d),
                [&](OpBuilder &fb, Location fl, Value e) {
                  memref::StoreOp::create(
                      fb, fl, memref::LoadOp::create(fb, fl, blockAcc, e),
                      p.partials, ValueRange{partRow, g, e});
                });
        memref::StoreOp::create(
            tb, l1, block.m, p.partials,
            ValueRange{partRow, g, t.c(partialMaxIndex(d))});
        memref::StoreOp::create(
            tb, l1, block.l, p.partials,
            ValueRange{partRow, g, t.c(partialSumIndex(d))});
      }
      {
        OpBuilder eb = ifOp.getElseBodyBuilder();
        KernelMath t{eb, l1};
        Value inv =
            t.sel(t.fgt(block.l, t.f(0.0)),
                  arith::DivFOp::create(eb, l1, t.f(1.0), block.l).getResult(),
                  t.f(0.0));
        emitFor(eb, l1, t.c(0), t.c(d),
                [&](OpBuilder &fb, Location fl, Value e) {
                  Value a = memref::LoadOp::create(fb, fl, blockAcc, e);
                  emitStoreF32(fb, fl, arith::MulFOp::create(fb, fl, a, inv),
                               ops.out, ValueRange{bi, hq, e});
                });
      }
    });
    // The last split of (b, h) to arrive merges them all.
    emitIf(b0, l0, multi, [&](OpBuilder &mb, Location ml) {
      Value ctr = memref::GetGlobalOp::create(mb, ml, counterGlobal.getType(),
                                              counterGlobal.getSymName());
      Value last = emitArriveLast(mb, ml, ctr, ValueRange{r}, p.splits);
      emitIf(mb, ml, last, [&](OpBuilder &lb, Location ll) {
        KernelMath t{lb, ll};
        Value first = t.mul(r, p.splits), end = t.add(first, p.splits);
        emitFor(
            lb, ll, t.c(0), group, [&](OpBuilder &gb, Location gl, Value g) {
              KernelMath u{gb, gl};
              Value hq = u.add(u.mul(h, group), g);
              emitZero(gb, gl, blockAcc, d);
              SmallVector<Value> ml2 = emitForCarrying(
                  gb, gl, first, end, ValueRange{u.negInf(), u.f(0.0)},
                  [&](OpBuilder &fb, Location fl, Value row,
                      ValueRange acc) -> SmallVector<Value> {
                    KernelMath q{fb, fl};
                    Value pm = memref::LoadOp::create(
                        fb, fl, p.partials,
                        ValueRange{row, g, q.c(partialMaxIndex(d))});
                    Value pl = memref::LoadOp::create(
                        fb, fl, p.partials,
                        ValueRange{row, g, q.c(partialSumIndex(d))});
                    MergeWeights mw = emitMergeWeights(fb, fl, acc[0], pm);
                    emitScale(fb, fl, blockAcc, mw.first, d);
                    emitAxpy(fb, fl, mw.second, Row{p.partials, {row, g}},
                             Row{blockAcc, {}}, q.c(d));
                    return {mw.max, q.fadd(q.fmul(acc[1], mw.first),
                                           q.fmul(pl, mw.second))};
                  });
              Value inv = u.sel(
                  u.fgt(ml2[1], u.f(0.0)),
                  arith::DivFOp::create(gb, gl, u.f(1.0), ml2[1]).getResult(),
                  u.f(0.0));
              emitFor(gb, gl, u.c(0), u.c(d),
                      [&](OpBuilder &fb, Location fl, Value e) {
                        Value a = memref::LoadOp::create(fb, fl, blockAcc, e);
                        emitStoreF32(fb, fl,
                                     arith::MulFOp::create(fb, fl, a, inv),
                                     ops.out, ValueRange{bi, hq, e});
                      });
            });
      });
    });
  };

  // The CUDA-core kernel keeps 4 loads per lane up to G = 4, 2 beyond; the
  // mma walk is the same for every G.
  Value wide;
  if (!mma)
    wide =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, group, x.c(4));
  emitFor(b, loc, x.c(0), batch, [&](OpBuilder &b1, Location l1, Value bi) {
    emitFor(b1, l1, x.c(0), hkv, [&](OpBuilder &b2, Location l2, Value h) {
      emitFor(b2, l2, x.c(0), p.splits,
              [&](OpBuilder &b3, Location l3, Value split) {
                if (mma)
                  return walkBlock(
                      b3, l3, bi, h, split,
                      DecodeGeometry::get(d, 1, mma).chunksPerLane);
                auto ifOp = scf::IfOp::create(b3, l3, wide, /*withElse=*/true);
                OpBuilder tb = ifOp.getThenBodyBuilder();
                walkBlock(tb, l3, bi, h, split,
                          DecodeGeometry::get(d, 4, mma).chunksPerLane);
                OpBuilder eb = ifOp.getElseBodyBuilder();
                walkBlock(
                    eb, l3, bi, h, split,
                    DecodeGeometry::get(d, kDecodeMaxGroup, mma).chunksPerLane);
              });
    });
  });
}
