//===- LowerDecodeAttention.cpp - Loop lowering of decode_attention ===//
//
// For every sequence b, KV head h and query head hq = h * G + g of h's
// group, one online softmax (Softmax.h) visits the pool slots
// [0, pool_count[b, h]) with gate clip(slot_score - tau[b, h], 0, 1), then
// the window ring slots k + (p mod w) of positions
// p = max(0, pos[b] - w + 1) .. pos[b] with gate 1 (the slot layout of the
// op's description, SPEC 6).
//
// The cache state comes from the runtime, so it is validated before any
// slot is read: pool counts outside [0, k] or negative positions are
// INVALID_CACHE_STATE, and NaN or +inf pool scores or a NaN tau are
// INVALID_SCORE (SPEC 3); either skips the whole op.
//
// In the parallel (GPU) form the host cannot read the cache, so each split
// thread checks what it reads and reports through the device status
// (Status.h), with the same codes: a bad count or position skips its
// (sequence, head) (an output of zeros there), an invalid pool score skips
// that slot. No slot outside [0, k + w) is ever read.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

#include "DecodeChecks.h"
#include "LoopUtils.h"
#include "Softmax.h"
#include "TauSolver.h"
#include "TopKHeap.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// What the cache-state scan found: i1 flags for the two error codes.
struct CacheValidity {
  Value stateOk;  // 0 <= pool_count <= k and pos >= 0 everywhere
  Value scoresOk; // pool scores neither NaN nor +inf, tau not NaN
};
} // namespace

DecodeSizes::DecodeSizes(OpBuilder &b, Location loc, DecodeAttentionOp op)
    : batch(emitDim(b, loc, op.getQuery(), 0)),
      hq(emitDim(b, loc, op.getQuery(), 1)),
      hkv(emitDim(b, loc, op.getKeySlots(), 1)),
      d(emitDim(b, loc, op.getQuery(), 2)),
      dv(emitDim(b, loc, op.getValueSlots(), 3)) {}

Value sparsek::emitDecodeShapesOk(OpBuilder &b, Location loc,
                                  DecodeAttentionOp op, DecodeSizes &sizes) {
  Value q = op.getQuery(), key = op.getKeySlots(), value = op.getValueSlots(),
        sc = op.getSlotScores(), tau = op.getTau(), cnt = op.getPoolCount(),
        pos = op.getPositions(), out = op.getInit();
  Value groupOk;
  sizes.group = emitGroupSize(b, loc, sizes.hq, sizes.hkv, groupOk);
  Value dimsOk = emitDimsAllEqual(b, loc,
                                  {// B
                                   {q, 0, key, 0},
                                   {q, 0, value, 0},
                                   {q, 0, sc, 0},
                                   {q, 0, tau, 0},
                                   {q, 0, cnt, 0},
                                   {q, 0, pos, 0},
                                   {q, 0, out, 0},
                                   // Hkv
                                   {key, 1, value, 1},
                                   {key, 1, sc, 1},
                                   {key, 1, tau, 1},
                                   {key, 1, cnt, 1},
                                   // Hq, D, Dv
                                   {q, 1, out, 1},
                                   {q, 2, key, 3},
                                   {value, 3, out, 2},
                                   // slots (k + w, static on key_slots)
                                   {key, 2, value, 2},
                                   {key, 2, sc, 2}});
  return emitAnd(b, loc, {dimsOk, groupOk});
}

Value sparsek::emitValidSlotScore(OpBuilder &b, Location loc, Value x) {
  Value inf = emitF32(b, loc, std::numeric_limits<double>::infinity());
  return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, inf);
}

/// Scans positions, pool counts and pool scores. Must only run once the
/// shapes agree, since it indexes every operand with the query's B.
static CacheValidity emitScanCache(OpBuilder &b, Location loc,
                                   DecodeAttentionOp op,
                                   const DecodeSizes &sizes) {
  int64_t k = op.getKAttr().getInt();
  Value zero = emitIndex(b, loc, 0), kBound = emitIndex(b, loc, k);
  Value yes = emitBool(b, loc, true);
  SmallVector<Value> flags = emitForCarrying(
      b, loc, zero, sizes.batch, {yes, yes},
      [&](OpBuilder &b1, Location l1, Value bi,
          ValueRange acc) -> SmallVector<Value> {
        Value pos = emitLoadIndex(b1, l1, op.getPositions(), bi);
        Value posOk =
            arith::CmpIOp::create(b1, l1, arith::CmpIPredicate::sge, pos, zero);
        SmallVector<Value> headAcc = {
            arith::AndIOp::create(b1, l1, acc[0], posOk), acc[1]};
        return emitForCarrying(
            b1, l1, zero, sizes.hkv, headAcc,
            [&](OpBuilder &b2, Location l2, Value h,
                ValueRange acc2) -> SmallVector<Value> {
              Value n = emitLoadIndex(b2, l2, op.getPoolCount(), {bi, h});
              Value countOk = emitInRange(b2, l2, n, zero, kBound);
              Value tau = memref::LoadOp::create(b2, l2, op.getTau(), {bi, h});
              Value tauOk = arith::CmpFOp::create(
                  b2, l2, arith::CmpFPredicate::ORD, tau, tau);
              // Pool scores are read only below a count known to fit.
              Value bound = arith::SelectOp::create(b2, l2, countOk, n, zero);
              Value poolOk = emitForCarrying(
                  b2, l2, zero, bound, tauOk,
                  [&](OpBuilder &b3, Location l3, Value slot,
                      ValueRange acc3) -> SmallVector<Value> {
                    Value s = memref::LoadOp::create(b3, l3, op.getSlotScores(),
                                                     {bi, h, slot});
                    Value valid = emitValidSlotScore(b3, l3, s);
                    return {arith::AndIOp::create(b3, l3, acc3[0], valid)};
                  })[0];
              return {arith::AndIOp::create(b2, l2, acc2[0], countOk),
                      arith::AndIOp::create(b2, l2, acc2[1], poolOk)};
            });
      });
  return {flags[0], flags[1]};
}

/// Records every failed check; returns the i1 that guards the computation.
static Value emitDecodeChecks(OpBuilder &b, Location loc, DecodeAttentionOp op,
                              DecodeSizes &sizes) {
  Value shapesOk = emitCheck(b, loc, op, emitDecodeShapesOk(b, loc, op, sizes),
                             SPARSEK_ERROR_SHAPE_MISMATCH);
  Value yes = emitBool(b, loc, true);
  auto scan = scf::IfOp::create(
      b, loc, shapesOk,
      [&](OpBuilder &nb, Location nl) {
        CacheValidity v = emitScanCache(nb, nl, op, sizes);
        scf::YieldOp::create(nb, nl, ValueRange{v.stateOk, v.scoresOk});
      },
      [&](OpBuilder &nb, Location nl) {
        scf::YieldOp::create(nb, nl, ValueRange{yes, yes});
      });
  Value stateOk = emitCheck(b, loc, op, scan.getResult(0),
                            SPARSEK_ERROR_INVALID_CACHE_STATE);
  Value scoresOk =
      emitCheck(b, loc, op, scan.getResult(1), SPARSEK_ERROR_INVALID_SCORE);
  return emitAnd(b, loc, {shapesOk, stateOk, scoresOk});
}

namespace {
/// The slots one query head hq of sequence bi reads through KV head h, and
/// the online-softmax steps over ranges of them. With `inKernel` (the
/// parallel form, where the host cannot scan device memory first) the
/// caller checks the cache state (emitStateOk) before using the ranges, and
/// the pool step reports and skips invalid scores itself.
struct DecodeSlots {
  mutable DecodeAttentionOp op; // its getters are not const
  const SoftmaxAccumulator &acc;
  Value bi, h;
  Row query;
  bool inKernel;
  int64_t k, w;

  DecodeSlots(DecodeAttentionOp op, const SoftmaxAccumulator &acc, Value bi,
              Value h, Value hq, bool inKernel)
      : op(op), acc(acc), bi(bi), h(h), query{op.getQuery(), {bi, hq}},
        inKernel(inKernel), k(op.getKAttr().getInt()),
        w(op.getWAttr().getInt()) {}

  /// Valid pool slots [0, count).
  Value emitPoolCount(OpBuilder &b, Location loc) const {
    return emitLoadIndex(b, loc, op.getPoolCount(), {bi, h});
  }

  /// i1: this (sequence, head)'s pool count is in [0, k] and its position
  /// is not negative (what emitScanCache checks on the host).
  Value emitStateOk(OpBuilder &b, Location loc) const {
    Value zero = emitIndex(b, loc, 0);
    Value countOk =
        emitInRange(b, loc, emitPoolCount(b, loc), zero, emitIndex(b, loc, k));
    Value pos = emitLoadIndex(b, loc, op.getPositions(), bi);
    Value posOk =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, pos, zero);
    return arith::AndIOp::create(b, loc, countOk, posOk);
  }

  /// Window positions [first, end): max(0, pos - w + 1) .. pos.
  std::pair<Value, Value> emitWindow(OpBuilder &b, Location loc) const {
    Value pos = emitLoadIndex(b, loc, op.getPositions(), bi);
    Value end = arith::AddIOp::create(b, loc, pos, emitIndex(b, loc, 1));
    Value first = arith::MaxSIOp::create(
        b, loc, arith::SubIOp::create(b, loc, end, emitIndex(b, loc, w)),
        emitIndex(b, loc, 0));
    return {first, end};
  }

  /// Adds pool slots [lo, hi) with gates clip(score - tau, 0, 1).
  SoftmaxAccumulator::State emitPool(OpBuilder &b, Location loc,
                                     SoftmaxAccumulator::State st, Value lo,
                                     Value hi) const {
    // The gate is the one sparsek.select computes (TauSolver.h): infinite
    // tau and masked scores give 0 or 1, never NaN.
    Value tau32 = memref::LoadOp::create(b, loc, op.getTau(), {bi, h});
    Value tau = arith::ExtFOp::create(b, loc, b.getF64Type(), tau32);
    return SoftmaxAccumulator::State::from(emitForCarrying(
        b, loc, lo, hi, st.values(),
        [&](OpBuilder &nb, Location nl, Value slot,
            ValueRange carried) -> SmallVector<Value> {
          Value score =
              memref::LoadOp::create(nb, nl, op.getSlotScores(), {bi, h, slot});
          auto cur = SoftmaxAccumulator::State::from(carried);
          Row keyRow{op.getKeySlots(), {bi, h, slot}};
          Row valueRow{op.getValueSlots(), {bi, h, slot}};
          Value gate = emitClipGate(nb, nl, score, tau);
          if (inKernel) {
            // Reported, then skipped (SPEC 3: kernels treat NaN as -inf).
            Value valid =
                emitDeviceCheck(nb, nl, op, emitValidSlotScore(nb, nl, score),
                                SPARSEK_ERROR_INVALID_SCORE);
            return acc.addIf(nb, nl, valid, cur, query, keyRow, valueRow, gate)
                .values();
          }
          return acc.add(nb, nl, cur, query, keyRow, valueRow, gate).values();
        }));
  }

  /// Adds the window slots k + (p mod w) of positions [lo, hi), gate 1.
  SoftmaxAccumulator::State emitWindowSlots(OpBuilder &b, Location loc,
                                            SoftmaxAccumulator::State st,
                                            Value lo, Value hi) const {
    Value gate = emitF32(b, loc, 1.0);
    return SoftmaxAccumulator::State::from(emitForCarrying(
        b, loc, lo, hi, st.values(),
        [&](OpBuilder &nb, Location nl, Value p,
            ValueRange carried) -> SmallVector<Value> {
          // Positions are >= 0 here (checked first), so the unsigned
          // remainder is the ring's p mod w.
          Value ring = arith::RemUIOp::create(nb, nl, p, emitIndex(nb, nl, w));
          Value slot =
              arith::AddIOp::create(nb, nl, emitIndex(nb, nl, k), ring);
          return acc
              .add(nb, nl, SoftmaxAccumulator::State::from(carried), query,
                   Row{op.getKeySlots(), {bi, h, slot}},
                   Row{op.getValueSlots(), {bi, h, slot}}, gate)
              .values();
        }));
  }
};
} // namespace

/// One query head hq of sequence b over all its slots (the sequential form,
/// after the host validated the cache).
static void emitDecodeQuery(OpBuilder &b, Location loc, DecodeAttentionOp op,
                            const SoftmaxAccumulator &acc, Value bi, Value h,
                            Value hq) {
  DecodeSlots slots(op, acc, bi, h, hq, /*inKernel=*/false);
  SoftmaxAccumulator::State st = acc.begin(b, loc, &slots.query);
  if (slots.k > 0)
    st = slots.emitPool(b, loc, st, emitIndex(b, loc, 0),
                        slots.emitPoolCount(b, loc));
  if (slots.w > 0) {
    auto [first, end] = slots.emitWindow(b, loc);
    st = slots.emitWindowSlots(b, loc, st, first, end);
  }
  acc.finish(b, loc, st, Row{op.getInit(), {bi, hq}});
}

/// The loop nest over (b, h, g), run once the checks passed.
static void emitDecodeLoops(OpBuilder &b, Location loc, DecodeAttentionOp op,
                            const DecodeSizes &sizes) {
  Value scale = emitAttentionScale(b, loc, op.getScale(), sizes.d);
  auto acc = SoftmaxAccumulator::create(b, loc, sizes.d, sizes.dv, scale);
  Value zero = emitIndex(b, loc, 0);
  emitFor(b, loc, zero, sizes.batch, [&](OpBuilder &b1, Location l1, Value bi) {
    emitFor(b1, l1, zero, sizes.hkv, [&](OpBuilder &b2, Location l2, Value h) {
      emitFor(b2, l2, zero, sizes.group,
              [&](OpBuilder &b3, Location l3, Value g) {
                Value hq = arith::AddIOp::create(
                    b3, l3, arith::MulIOp::create(b3, l3, h, sizes.group), g);
                emitDecodeQuery(b3, l3, op, acc, bi, h, hq);
              });
    });
  });
  acc.release(b, loc);
}

/// Slots per split of the parallel form: short enough that a batch of one
/// still fills the GPU with (query head, split) threads, long enough that
/// the partial results stay small next to the keys read.
static constexpr int64_t kDecodeSplit = 64;

/// Split `p` of query head hq of sequence bi: the online softmax over the
/// slots of virtual index v in [p L, (p + 1) L) (v < k: pool slot v, valid
/// below the pool count; v >= k: the (v - k)-th window position from the
/// oldest, valid up to pos[b]), written unnormalized to the partials.
static void emitDecodeSplit(OpBuilder &b, Location loc, DecodeAttentionOp op,
                            const SoftmaxAccumulator &acc, Value bi, Value h,
                            Value hq, Value p, Value partMax, Value partSum,
                            Value partAcc) {
  DecodeSlots slots(op, acc, bi, h, hq, /*inKernel=*/true);
  int64_t k = slots.k, w = slots.w;
  Value kIdx = emitIndex(b, loc, k);
  SoftmaxAccumulator::State empty = acc.begin(b, loc, &slots.query);
  // The cache state first (a bad one skips the split: nothing read out of
  // range), then tau, as the host scan of the sequential form does.
  Value stateOk = emitDeviceCheck(b, loc, op, slots.emitStateOk(b, loc),
                                  SPARSEK_ERROR_INVALID_CACHE_STATE);
  SoftmaxAccumulator::State st = SoftmaxAccumulator::State::from(emitIfElse(
      b, loc, stateOk,
      [&](OpBuilder &nb, Location nl) -> SmallVector<Value> {
        Value tau = memref::LoadOp::create(nb, nl, op.getTau(), {bi, h});
        emitDeviceCheck(
            nb, nl, op,
            arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::ORD, tau, tau),
            SPARSEK_ERROR_INVALID_SCORE);
        SoftmaxAccumulator::State cur = empty;
        Value lo =
            arith::MulIOp::create(nb, nl, p, emitIndex(nb, nl, kDecodeSplit));
        Value hi = arith::MinSIOp::create(
            nb, nl,
            arith::AddIOp::create(nb, nl, lo, emitIndex(nb, nl, kDecodeSplit)),
            emitIndex(nb, nl, k + w));
        // The pool part of the split, then its window part (either may be
        // empty).
        if (k > 0) {
          Value poolHi =
              arith::MinSIOp::create(nb, nl, hi, slots.emitPoolCount(nb, nl));
          cur = slots.emitPool(nb, nl, cur, lo, poolHi);
        }
        if (w > 0) {
          // Window index i = v - k over [max(lo, k), max(hi, k)) - k,
          // position first + i, valid below end.
          auto [first, end] = slots.emitWindow(nb, nl);
          Value iLo = arith::SubIOp::create(
              nb, nl, arith::MaxSIOp::create(nb, nl, lo, kIdx), kIdx);
          Value iHi = arith::SubIOp::create(
              nb, nl, arith::MaxSIOp::create(nb, nl, hi, kIdx), kIdx);
          Value posLo = arith::AddIOp::create(nb, nl, first, iLo);
          Value posHi = arith::MinSIOp::create(
              nb, nl, arith::AddIOp::create(nb, nl, first, iHi), end);
          cur = slots.emitWindowSlots(nb, nl, cur, posLo, posHi);
        }
        return cur.values();
      },
      [&](OpBuilder &, Location) { return empty.values(); }));
  memref::StoreOp::create(b, loc, st.max, partMax, ValueRange{bi, hq, p});
  memref::StoreOp::create(b, loc, st.sum, partSum, ValueRange{bi, hq, p});
  acc.storePartial(b, loc, st, Row{partAcc, {bi, hq, p}});
}

/// Combines the splits of query head hq of sequence bi (the log-sum-exp
/// merge of online softmaxes) and writes the output row.
static void emitDecodeCombine(OpBuilder &b, Location loc, DecodeAttentionOp op,
                              Value bi, Value hq, int64_t splits, int64_t dv,
                              Value partMax, Value partSum, Value partAcc) {
  Value zero = emitIndex(b, loc, 0), nSplits = emitIndex(b, loc, splits);
  Value f0 = emitF32(b, loc, 0.0);
  Value negInf = emitF32(b, loc, -std::numeric_limits<double>::infinity());
  Value max =
      emitForCarrying(b, loc, zero, nSplits, ValueRange{negInf},
                      [&](OpBuilder &nb, Location nl, Value p,
                          ValueRange m) -> SmallVector<Value> {
                        Value pm = memref::LoadOp::create(
                            nb, nl, partMax, ValueRange{bi, hq, p});
                        return {arith::MaximumFOp::create(nb, nl, m[0], pm)};
                      })[0];
  // No key anywhere: max stays -inf and the output is 0 (not exp(nan)).
  Value anyKey =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, max, negInf);
  Value safeMax = arith::SelectOp::create(b, loc, anyKey, max, f0);
  // Split p's weight; empty splits have max -inf: a factor of exactly 0.
  auto factor = [&](OpBuilder &nb, Location nl, Value p) {
    Value pm = memref::LoadOp::create(nb, nl, partMax, ValueRange{bi, hq, p});
    return math::ExpOp::create(nb, nl,
                               arith::SubFOp::create(nb, nl, pm, safeMax));
  };
  Value sum = emitForCarrying(
      b, loc, zero, nSplits, ValueRange{f0},
      [&](OpBuilder &nb, Location nl, Value p,
          ValueRange c) -> SmallVector<Value> {
        Value ps =
            memref::LoadOp::create(nb, nl, partSum, ValueRange{bi, hq, p});
        return {arith::AddFOp::create(
            nb, nl, c[0],
            arith::MulFOp::create(nb, nl, ps, factor(nb, nl, p)))};
      })[0];
  Value empty =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, sum, f0);
  Value inv = arith::SelectOp::create(
      b, loc, empty, f0,
      arith::DivFOp::create(b, loc, emitF32(b, loc, 1.0), sum));
  if (dv > kMaxRegisterRow) {
    // Long rows element by element, as the splits kept them (in memory).
    Row out{op.getInit(), {bi, hq}};
    emitFor(b, loc, zero, emitIndex(b, loc, dv),
            [&](OpBuilder &nb, Location nl, Value c) {
              Value a = emitForCarrying(
                  nb, nl, zero, nSplits, ValueRange{f0},
                  [&](OpBuilder &ib, Location il, Value p,
                      ValueRange acc) -> SmallVector<Value> {
                    Value pa = memref::LoadOp::create(ib, il, partAcc,
                                                      ValueRange{bi, hq, p, c});
                    return {arith::AddFOp::create(
                        ib, il, acc[0],
                        arith::MulFOp::create(ib, il, factor(ib, il, p), pa))};
                  })[0];
              out.storeF32(nb, nl, arith::MulFOp::create(nb, nl, a, inv), c);
            });
    return;
  }
  auto vecType = VectorType::get({dv}, b.getF32Type());
  Value zeros = vector::BroadcastOp::create(b, loc, vecType, f0);
  Value acc = emitForCarrying(
      b, loc, zero, nSplits, ValueRange{zeros},
      [&](OpBuilder &nb, Location nl, Value p,
          ValueRange c) -> SmallVector<Value> {
        Value pa =
            vector::LoadOp::create(nb, nl, vecType, partAcc,
                                   ValueRange{bi, hq, p, emitIndex(nb, nl, 0)});
        Value f = factor(nb, nl, p);
        return {vector::FMAOp::create(
            nb, nl, vector::BroadcastOp::create(nb, nl, vecType, f), pa, c[0])};
      })[0];
  Value o = arith::MulFOp::create(
      b, loc, acc, vector::BroadcastOp::create(b, loc, vecType, inv));
  Type elem = cast<MemRefType>(op.getInit().getType()).getElementType();
  if (!elem.isF32())
    o = arith::TruncFOp::create(b, loc, vecType.clone(elem), o);
  vector::StoreOp::create(b, loc, o, op.getInit(), ValueRange{bi, hq, zero});
}

/// The parallel (GPU) form, split over the slots (split-K, as FlashDecoding
/// does): one thread per (sequence, query head, split of kDecodeSplit
/// slots) writes an unnormalized partial softmax, then one thread per
/// (sequence, query head) merges them. One thread per query head alone
/// would leave a small batch with a few dozen threads walking k + w slots.
static void emitParallelDecodeLoops(OpBuilder &b, Location loc,
                                    DecodeAttentionOp op,
                                    const DecodeSizes &sizes, int64_t headBlock,
                                    bool alignedRows) {
  Value scale = emitAttentionScale(b, loc, op.getScale(), sizes.d);
  int64_t k = op.getKAttr().getInt(), w = op.getWAttr().getInt();
  int64_t dv = *getConstantIntValue(sizes.dv);
  int64_t splits =
      std::max<int64_t>(1, (k + w + kDecodeSplit - 1) / kDecodeSplit);
  Value nSplits = emitIndex(b, loc, splits);
  auto partType = MemRefType::get(
      {ShapedType::kDynamic, ShapedType::kDynamic, splits}, b.getF32Type());
  SmallVector<Value> dims{sizes.batch, sizes.hq};
  Value partMax = memref::AllocOp::create(b, loc, partType, dims);
  Value partSum = memref::AllocOp::create(b, loc, partType, dims);
  Value partAcc = memref::AllocOp::create(
      b, loc,
      MemRefType::get({ShapedType::kDynamic, ShapedType::kDynamic, splits, dv},
                      b.getF32Type()),
      dims);
  // Threads of a block are the query heads of one (sequence, split): the
  // G heads of a KV head read the same slot rows at the same time.
  emitParallelBlocks(
      b, loc, {sizes.batch, nSplits}, sizes.hq, headBlock,
      [&](OpBuilder &nb, Location nl, ValueRange outer, Value hq) {
        Value h = arith::DivUIOp::create(nb, nl, hq, sizes.group);
        auto acc = SoftmaxAccumulator::create(nb, nl, sizes.d, sizes.dv, scale,
                                              /*onStack=*/true, alignedRows);
        emitDecodeSplit(nb, nl, op, acc, outer[0], h, hq, outer[1], partMax,
                        partSum, partAcc);
      });
  emitParallelBlocks(
      b, loc, {sizes.batch}, sizes.hq, headBlock,
      [&](OpBuilder &nb, Location nl, ValueRange outer, Value hq) {
        emitDecodeCombine(nb, nl, op, outer[0], hq, splits, dv, partMax,
                          partSum, partAcc);
      });
  for (Value v : {partMax, partSum, partAcc})
    memref::DeallocOp::create(b, loc, v);
}

LogicalResult
mlir::sparsek::lowerDecodeAttentionToLoops(RewriterBase &rewriter,
                                           DecodeAttentionOp op,
                                           const LoopLoweringOptions &options) {
  Location loc = op.getLoc();
  DecodeSizes sizes(rewriter, loc, op);
  if (options.parallelLoops) {
    if (cast<ShapedType>(op.getValueSlots().getType()).isDynamicDim(3))
      return op.emitOpError()
             << "needs a static value head dimension Dv for the parallel "
                "(GPU) lowering: its per-query scratch lives on the stack";
    // Only sizes are checked on the host; the kernels check the cache state
    // and scores they read (device status).
    Value ok = emitCheck(rewriter, loc, op,
                         emitDecodeShapesOk(rewriter, loc, op, sizes),
                         SPARSEK_ERROR_SHAPE_MISMATCH);
    bool alignedRows = false;
    ok = emitAnd(rewriter, loc,
                 {ok, emitRowAlignmentCheck(rewriter, loc, op,
                                            {op.getQuery(), op.getKeySlots(),
                                             op.getValueSlots(), op.getInit()},
                                            alignedRows)});
    emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location loc) {
      emitParallelDecodeLoops(b, loc, op, sizes, options.queryBlock,
                              alignedRows);
    });
    rewriter.eraseOp(op);
    return success();
  }
  Value ok = emitDecodeChecks(rewriter, loc, op, sizes);
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location loc) {
    emitDecodeLoops(b, loc, op, sizes);
  });
  rewriter.eraseOp(op);
  return success();
}
