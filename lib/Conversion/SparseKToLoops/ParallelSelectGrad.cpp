//===- ParallelSelectGrad.cpp - Parallel (GPU) form of sparsek.select_grad ===//
//
// The SPARSEK VJP of LowerSelectGrad.cpp without a walk over a row per
// query. Per (b, h), with c(t) = sum_{i in Sel(t) & Supp(t)} dg(t, i) /
// |Supp(t)|:
//   du[j] = sum_{t : j in Sel(t) & Supp(t)} dg(t, j) - sum_{t : j in Supp(t)}
//   c(t)
// The first sum is scattered from one thread per query (k entries each,
// added atomically). The second rests on tau(t) never decreasing in t
// (SPEC 3: the candidate set only grows): p_j(t) = clip(u_j - tau(t), 0, 1)
// then never increases, so {t : p_j(t) > 0} is a prefix and {t : p_j(t) <
// 1} a suffix of the queries for which j is a candidate, and j is in the
// support for one contiguous range [lo_j, hi_j) of queries, found by two
// binary searches over tau. Hence, with inclusive prefix sums over t:
//   |Supp(t)| = prefix of (+1 at lo_j, -1 at hi_j) over all keys j,
//   sum_{t in [lo_j, hi_j)} c(t) = C(hi_j - 1) - C(lo_j - 1).
// Kernels, in order: zero du and the difference array; per key the range
// (and the NaN/+inf check of its score); the count scan; per query the
// selected support's gradients and c(t); the scan of c; per key the mean
// term. Every thread does O(k), O(log T) or O(sqrt T)-like work (the scans
// are two-level, ParallelScan below). The scans run in f64: the mean term
// is a difference of prefix sums over up to T queries.
//
// The ranges use the same gate comparison as the serial form (emitInSupport
// on the stored f32 tau), so the two agree wherever the stored tau is
// non-decreasing along t; rounding could only break that between queries
// whose exact thresholds are equal, and only a score within rounding of
// them (a clip kink, where the gradient jumps anyway) would then see it.
//
//===----------------------------------------------------------------------===//
#include "ParallelSelectGrad.h"

#include "LoopUtils.h"
#include "TauSolver.h"
#include "TopKHeap.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::sparsek;

/// Elements per chunk of the two-level scan: each thread adds at most this
/// many of its chunk plus one total per earlier chunk (T / kScanChunk).
static constexpr int64_t kScanChunk = 256;

static Value f64Zero(OpBuilder &b, Location loc) {
  return arith::ConstantOp::create(b, loc, b.getF64FloatAttr(0.0));
}

static Value sumRange(OpBuilder &b, Location loc, Value buf, Value bi, Value h,
                      Value lo, Value hi) {
  return emitForCarrying(
      b, loc, lo, hi, f64Zero(b, loc),
      [&](OpBuilder &nb, Location nl, Value x,
          ValueRange acc) -> SmallVector<Value> {
        Value v = memref::LoadOp::create(nb, nl, buf, ValueRange{bi, h, x});
        return {arith::AddFOp::create(nb, nl, acc[0], v)};
      })[0];
}

/// out[b, h, x] = sum_{x' <= x} in[b, h, x'] for f64 [B, H, n] buffers, in
/// two kernels: chunk totals, then per element the earlier chunks' totals
/// plus its own chunk's prefix.
static void emitParallelScan(OpBuilder &b, Location loc, Value in, Value out,
                             Value batch, Value heads, Value n, int64_t block) {
  Value chunk = emitIndex(b, loc, kScanChunk);
  Value chunks = arith::CeilDivUIOp::create(b, loc, n, chunk);
  int64_t dyn = ShapedType::kDynamic;
  Value totals = memref::AllocOp::create(
      b, loc, MemRefType::get({dyn, dyn, dyn}, b.getF64Type()),
      ValueRange{batch, heads, chunks});
  emitParallelBlocks(b, loc, {batch, heads}, chunks, block,
                     [&](OpBuilder &nb, Location nl, ValueRange ivs, Value c) {
                       Value lo = arith::MulIOp::create(nb, nl, c, chunk);
                       Value hi = arith::MinUIOp::create(
                           nb, nl, arith::AddIOp::create(nb, nl, lo, chunk), n);
                       memref::StoreOp::create(
                           nb, nl, sumRange(nb, nl, in, ivs[0], ivs[1], lo, hi),
                           totals, ValueRange{ivs[0], ivs[1], c});
                     });
  emitParallelBlocks(
      b, loc, {batch, heads}, n, block,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value x) {
        Value c = arith::DivUIOp::create(nb, nl, x, chunk);
        Value before =
            sumRange(nb, nl, totals, ivs[0], ivs[1], emitIndex(nb, nl, 0), c);
        Value start = arith::MulIOp::create(nb, nl, c, chunk);
        Value end = arith::AddIOp::create(nb, nl, x, emitIndex(nb, nl, 1));
        Value own = sumRange(nb, nl, in, ivs[0], ivs[1], start, end);
        memref::StoreOp::create(nb, nl,
                                arith::AddFOp::create(nb, nl, before, own), out,
                                ValueRange{ivs[0], ivs[1], x});
      });
  memref::DeallocOp::create(b, loc, totals);
}

void mlir::sparsek::emitParallelSupportGrad(
    OpBuilder &b, Location loc, const SupportGradProblem &p,
    function_ref<void(OpBuilder &, Location)> own, SupportSumFn sumAt) {
  Value u = p.scores, du = p.du;
  int64_t w = p.w, block = p.block;
  const SelectGradShape &z = p.z;
  int64_t dyn = ShapedType::kDynamic;
  auto scratch = [&](Type elem, Value n) {
    return memref::AllocOp::create(b, loc,
                                   MemRefType::get({dyn, dyn, dyn}, elem),
                                   ValueRange{z.batch, z.hkv, n})
        .getResult();
  };
  Type f64 = b.getF64Type(), i64 = b.getI64Type();
  Value diff = scratch(f64, z.t), count = scratch(f64, z.t);
  Value share = scratch(f64, z.t), shares = scratch(f64, z.t);
  Value rangeLo = scratch(i64, z.s), rangeHi = scratch(i64, z.s);
  emitParallelZeroFill(b, loc, du, block);
  emitParallelZeroFill(b, loc, diff, block);

  // Query t has position S - T + t; key j is a candidate from query
  // j + w - (S - T) on.
  Value shift = arith::SubIOp::create(b, loc, emitIndex(b, loc, w),
                                      arith::SubIOp::create(b, loc, z.s, z.t));
  auto tauAt = [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t) {
    return arith::ExtFOp::create(nb, nl, nb.getF64Type(),
                                 p.tauAt(nb, nl, bi, h, t))
        .getResult();
  };
  auto toI64 = [](OpBuilder &nb, Location nl, Value v) {
    return arith::IndexCastOp::create(nb, nl, nb.getI64Type(), v).getResult();
  };
  auto toIndex = [](OpBuilder &nb, Location nl, Value v) {
    return arith::IndexCastOp::create(nb, nl, nb.getIndexType(), v).getResult();
  };

  // Per key: its support range of queries [lo, hi), counted into diff.
  emitParallelBlocks(
      b, loc, {z.batch, z.hkv}, z.s, block,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value j) {
        Value bi = ivs[0], h = ivs[1];
        Value score = memref::LoadOp::create(nb, nl, u, ValueRange{bi, h, j});
        emitIsCandidateScore(nb, nl, p.anchor, score, /*inKernel=*/true);
        Value first = arith::MaxSIOp::create(
            nb, nl, arith::AddIOp::create(nb, nl, j, shift),
            emitIndex(nb, nl, 0));
        Value from = arith::MinSIOp::create(nb, nl, first, z.t);
        auto gate = [&](OpBuilder &pb, Location pl, Value t) {
          return emitClipGate(pb, pl, score, tauAt(pb, pl, bi, h, t));
        };
        // p > 0 fails from `hi` on; p < 1 holds from `lo` on.
        Value hi = emitFirstTrue(
            nb, nl, from, z.t, [&](OpBuilder &pb, Location pl, Value t) {
              return arith::CmpFOp::create(pb, pl, arith::CmpFPredicate::ULE,
                                           gate(pb, pl, t),
                                           emitF32(pb, pl, 0.0))
                  .getResult();
            });
        Value lo = emitFirstTrue(
            nb, nl, from, hi, [&](OpBuilder &pb, Location pl, Value t) {
              return arith::CmpFOp::create(pb, pl, arith::CmpFPredicate::OLT,
                                           gate(pb, pl, t),
                                           emitF32(pb, pl, 1.0))
                  .getResult();
            });
        memref::StoreOp::create(nb, nl, toI64(nb, nl, lo), rangeLo,
                                ValueRange{bi, h, j});
        memref::StoreOp::create(nb, nl, toI64(nb, nl, hi), rangeHi,
                                ValueRange{bi, h, j});
        Value nonEmpty =
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult, lo, hi);
        emitIf(nb, nl, nonEmpty, [&](OpBuilder &ib, Location il) {
          auto one = [&](double v) {
            return arith::ConstantOp::create(ib, il, ib.getF64FloatAttr(v));
          };
          emitAtomicAdd(ib, il, diff, {bi, h, lo}, one(1.0));
          Value inside =
              arith::CmpIOp::create(ib, il, arith::CmpIPredicate::ult, hi, z.t);
          emitIf(ib, il, inside, [&](OpBuilder &eb, Location el) {
            emitAtomicAdd(
                eb, el, diff, {bi, h, hi},
                arith::ConstantOp::create(eb, el, eb.getF64FloatAttr(-1.0)));
          });
        });
      });
  emitParallelScan(b, loc, diff, count, z.batch, z.hkv, z.t, block);
  own(b, loc);

  // Per query: the selected support's gradient sum, and c(t).
  emitParallelBlocks(
      b, loc, {z.batch, z.hkv}, z.t, block,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value t) {
        Value bi = ivs[0], h = ivs[1];
        Value pos = arith::AddIOp::create(
            nb, nl, arith::SubIOp::create(nb, nl, z.s, z.t), t);
        Value lastCandidate =
            arith::SubIOp::create(nb, nl, pos, emitIndex(nb, nl, w));
        Value tau = tauAt(nb, nl, bi, h, t);
        Value sum = sumAt(nb, nl, bi, h, t, lastCandidate, tau);
        // As the serial form: c = sum / |Supp(t)| in f32, 0 when sum is 0
        // (then the support may be empty).
        Value n = memref::LoadOp::create(nb, nl, count, ValueRange{bi, h, t});
        Value nonZero = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::UNE,
                                              sum, emitF32(nb, nl, 0.0));
        Value n32 = arith::TruncFOp::create(nb, nl, nb.getF32Type(), n);
        Value mean = arith::DivFOp::create(nb, nl, sum, n32);
        Value c = arith::SelectOp::create(nb, nl, nonZero, mean,
                                          emitF32(nb, nl, 0.0));
        memref::StoreOp::create(nb, nl, arith::ExtFOp::create(nb, nl, f64, c),
                                share, ValueRange{bi, h, t});
      });
  emitParallelScan(b, loc, share, shares, z.batch, z.hkv, z.t, block);

  // Per key: minus the shares of the queries whose support holds it.
  emitParallelBlocks(
      b, loc, {z.batch, z.hkv}, z.s, block,
      [&](OpBuilder &nb, Location nl, ValueRange ivs, Value j) {
        Value bi = ivs[0], h = ivs[1];
        Value lo = toIndex(
            nb, nl,
            memref::LoadOp::create(nb, nl, rangeLo, ValueRange{bi, h, j}));
        Value hi = toIndex(
            nb, nl,
            memref::LoadOp::create(nb, nl, rangeHi, ValueRange{bi, h, j}));
        Value nonEmpty =
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult, lo, hi);
        emitIf(nb, nl, nonEmpty, [&](OpBuilder &ib, Location il) {
          Value one = emitIndex(ib, il, 1);
          Value upTo = memref::LoadOp::create(
              ib, il, shares,
              ValueRange{bi, h, arith::SubIOp::create(ib, il, hi, one)});
          Value hasBefore = arith::CmpIOp::create(
              ib, il, arith::CmpIPredicate::ugt, lo, emitIndex(ib, il, 0));
          Value before = emitIfElse(
              ib, il, hasBefore,
              [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
                return {memref::LoadOp::create(
                    tb, tl, shares,
                    ValueRange{bi, h, arith::SubIOp::create(tb, tl, lo, one)})};
              },
              [&](OpBuilder &eb, Location el) -> SmallVector<Value> {
                return {f64Zero(eb, el)};
              })[0];
          Value total = arith::TruncFOp::create(
              ib, il, ib.getF32Type(),
              arith::SubFOp::create(ib, il, upTo, before));
          Value old = memref::LoadOp::create(ib, il, du, ValueRange{bi, h, j});
          memref::StoreOp::create(ib, il,
                                  arith::SubFOp::create(ib, il, old, total), du,
                                  ValueRange{bi, h, j});
        });
      });
  for (Value buf : {diff, count, share, shares, rangeLo, rangeHi})
    memref::DeallocOp::create(b, loc, buf);
}

void mlir::sparsek::emitParallelSelectGrad(OpBuilder &b, Location loc,
                                           SelectGradOp op,
                                           const SelectGradShape &z,
                                           int64_t block) {
  Value tauBuf = op.getTau();
  auto tauAt = [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t) {
    return memref::LoadOp::create(nb, nl, tauBuf, ValueRange{bi, h, t})
        .getResult();
  };
  SupportGradProblem p{op, op.getScores(), op.getInit(), op.getWAttr().getInt(),
                       z,  block,          tauAt};
  // The selected support's own gradients are added per query, with its sum.
  emitParallelSupportGrad(
      b, loc, p, [](OpBuilder &, Location) {},
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value t,
          Value lastCandidate, Value tau) {
        return emitSupportGateGradSum(nb, nl, op, z.k, bi, h, t, lastCandidate,
                                      tau, emitAtomicAdd);
      });
}
