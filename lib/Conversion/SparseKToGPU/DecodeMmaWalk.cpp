//===- DecodeMmaWalk.cpp - The decode walk of one warp on tensor cores ----===//
//
// math=mma (DecodeTiles.h): per iteration a warp takes 16 consecutive
// virtual slots (key tile t in {0, 1}, key n in [0, 8): slot 8 t + n of the
// warp's piece) and computes, with mma.sync m16n8k16 and f32 accumulators,
//   S = Q K^T   A = Q (rows: the G heads, zero rows up to 16), B = K^T per
//               key tile (n = the 8 keys), over D / 16 k-steps;
//   O^T += V^T P^T   A = V^T (rows: 16 of the D columns), B = P^T (k: the
//               16 keys, n: the heads), over D / 16 row tiles.
// Lane (q = lane / 4, r = lane % 4) then holds S[head q][keys 2r, 2r + 1]
// of both key tiles, which is exactly its B fragment of P^T when the PV
// product numbers its keys k = 2r, 2r + 1 (tile 0) and 2r + 8, 2r + 9
// (tile 1): P never leaves the registers. The dot products run over a
// permutation of D chosen so that every operand comes from whole 16-byte
// row loads:
//   - K (B of QK): lane loads chunks 4 j + r of key q of each tile; k-step
//     2 j + e takes words 2 e, 2 e + 1 of chunk j (k = 2r, 2r + 1 and
//     2r + 8, 2r + 9 are 4 consecutive columns); Q (A) takes the same
//     columns of head q from registers loaded once;
//   - V (A of PV): lane loads the 2 M columns [2 M q, 2 M q + 2 M) (M = D /
//     16 row tiles) of its 4 keys 2r, 2r + 1, 2r + 8, 2r + 9; row tile u
//     takes column 2 M q + u as row q and 2 M q + M + u as row q + 8, each
//     register pairing one column of two keys (a byte permute).
// The online softmax is per (warp, head): lanes of a quad share the head's
// max (two xor shuffles per tile) and keep partial sums; the O^T columns of
// a lane are heads 2r, 2r + 1, whose rescale factors come from lanes 8 r
// and 8 r + 4. P is rounded to the element type for the PV product, as in
// the mma.sync prefill (SPEC 8: 2e-2 on bf16/f16 outputs); the sums are
// f32. Gates multiply P, not the sum (SPEC 5).
// The loads are software-pipelined in registers: iteration `it` issues the
// K, V and score loads of iteration it + 1 before its own math and carries
// them to the next, so each warp always has a tile in flight (the loads go
// straight to registers: there is no ring in workgroup memory to hide
// their latency behind).
//
//===----------------------------------------------------------------------===//
#include "DecodeTiles.h"
#include "KernelMath.h"

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// MmaMath plus the decode walk's operand loads and lane exchanges.
struct MK : MmaMath {
  using MmaMath::MmaMath;

  Value zeroReg() {
    return toReg(arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(pairType(), b.getZeroAttr(elem))));
  }
  /// Elements (i, j) of x ++ y as one register (i of x, j counted in y).
  Value pairOf(Value x, int64_t i, Value y, int64_t j) {
    int64_t n = cast<VectorType>(x.getType()).getDimSize(0);
    return toReg(
        vector::ShuffleOp::create(b, loc, x, y, ArrayRef<int64_t>{i, n + j}));
  }
  /// `n` elements at `at` (16-byte aligned rows, 8 elements per load).
  Value load(Value buf, ValueRange at, int64_t n) {
    return vector::LoadOp::create(b, loc, VectorType::get({n}, elem), buf, at,
                                  /*nontemporal=*/false, llvm::MaybeAlign(16));
  }
  /// `x` of lane `src` (i32 lane index).
  Value shuffleIdx(Value x, Value src) {
    return gpu::ShuffleOp::create(b, loc, x, src, ci32(32),
                                  gpu::ShuffleMode::IDX)
        .getShuffleResult();
  }
};
} // namespace

void sparsek::emitDecodeMmaWalk(OpBuilder &b, Location loc,
                                const DecodeWarpWalk &w) {
  MK x{b, loc, w.elem};
  int64_t d = w.d, k = w.k;
  int64_t kSteps = d / 16, rowTiles = d / 16;
  int64_t vCols = 2 * rowTiles; // V columns a lane reads per key
  DecodeGeometry geo = DecodeGeometry::get(d, w.group, /*mma=*/true);
  Value quad = x.div(w.lane, x.c(4)), r = x.rem(w.lane, x.c(4));
  const DecodeSplitRange &range = w.range;

  // A of QK: head `quad` of the group (zero rows from G up), the columns of
  // k-step 2 j + e being words 2 e, 2 e + 1 of chunk 4 j + r.
  Value inGroup = x.lt(quad, x.c(w.group));
  Value hq = x.add(x.mul(w.h, x.c(w.group)),
                   x.sel(inGroup, quad, x.c(0))); // a valid row to load
  Value zero = x.zeroReg();
  SmallVector<std::array<Value, 4>> qa;
  for (int64_t j = 0; j < d / 32; ++j) {
    Value chunk = x.load(
        w.ops.q, {w.bi, hq, x.mul(x.add(x.c(4 * j), r), x.c(kDecodeChunk))},
        kDecodeChunk);
    for (int64_t e = 0; e < 2; ++e) {
      Value lo = x.sel(inGroup, x.pairOf(chunk, 4 * e, chunk, 4 * e + 1), zero);
      Value hi =
          x.sel(inGroup, x.pairOf(chunk, 4 * e + 2, chunk, 4 * e + 3), zero);
      qa.push_back({lo, zero, hi, zero});
    }
  }
  Value log2Scale = w.log2Scale;

  // Key (tile t, n) of iteration `it` is virtual slot v = lo +
  // 16 (it W + warp) + 8 t + n, inside the walk where v < hi.
  auto slotOf = [&](OpBuilder &ob, Location ol, Value it, Value key,
                    Value &inside, Value &v) {
    v = emitWalkSlot(ob, ol, geo, range.lo, it, w.warp, 0, key);
    inside = KernelMath{ob, ol}.lt(v, range.hi);
  };
  // Its row; past hi it reads slot lo (a row of (b, h)), masked.
  auto rowOf = [&](OpBuilder &ob, Location ol, Value it, Value key) {
    KernelMath y{ob, ol};
    Value inside, v;
    slotOf(ob, ol, it, key, inside, v);
    Value slot = range.emitSlot(ob, ol, y.sel(inside, v, range.lo), k);
    return y.add(w.pairRow, slot);
  };
  // This lane's keys of P and V: 2r, 2r + 1, 2r + 8, 2r + 9.
  auto pvKey = [&](KernelMath &y, int64_t i) {
    return y.add(y.mul(r, y.c(2)), y.c(8 * (i / 2) + i % 2));
  };
  // What a lane loads per iteration, in order: K (B of QK), key `quad` of
  // each tile, chunks 4 j + r; the V columns of its 4 P keys; their scores.
  int64_t kLoads = 2 * (d / 32);
  SmallVector<Type> loadTypes(kLoads, VectorType::get({kDecodeChunk}, w.elem));
  loadTypes.append(4, VectorType::get({vCols}, w.elem));
  if (k > 0)
    loadTypes.append(4, b.getF32Type());
  auto loadIteration = [&](OpBuilder &ob, Location ol, Value it) {
    MK y{ob, ol, w.elem};
    SmallVector<Value> out;
    for (int64_t t = 0; t < 2; ++t) {
      Value row = rowOf(ob, ol, it, y.add(quad, y.c(8 * t)));
      for (int64_t j = 0; j < d / 32; ++j)
        out.push_back(y.load(
            w.keyRows, {row, y.mul(y.add(y.c(4 * j), r), y.c(kDecodeChunk))},
            kDecodeChunk));
    }
    SmallVector<Value> rows;
    for (int64_t i = 0; i < 4; ++i) {
      rows.push_back(rowOf(ob, ol, it, pvKey(y, i)));
      out.push_back(
          y.load(w.valueRows, {rows.back(), y.mul(quad, y.c(vCols))}, vCols));
    }
    if (k > 0)
      for (Value row : rows)
        out.push_back(
            memref::LoadOp::create(ob, ol, w.scoreRows, ValueRange{row}));
    return out;
  };
  // Iteration `it`'s loads where `cond` holds (else zeros, never read): an
  // empty walk reads nothing, and its range may not name a valid row.
  auto loadIf = [&](OpBuilder &ob, Location ol, Value cond, Value it) {
    auto ifOp = scf::IfOp::create(
        ob, ol, cond,
        [&](OpBuilder &nb, Location nl) {
          scf::YieldOp::create(nb, nl, loadIteration(nb, nl, it));
        },
        [&](OpBuilder &nb, Location nl) {
          SmallVector<Value> zeros;
          for (Type t : loadTypes)
            zeros.push_back(
                arith::ConstantOp::create(nb, nl, t, nb.getZeroAttr(t)));
          scf::YieldOp::create(nb, nl, zeros);
        });
    return SmallVector<Value>(ifOp.getResults());
  };

  // Carried: the head's max (same in the quad), this lane's partial sum,
  // then O^T: per row tile u, (column 2 M quad + u, heads 2r, 2r + 1) and
  // (column 2 M quad + M + u, the same heads); then the loads of the
  // iteration, issued one iteration ahead so that their latency overlaps
  // the previous iteration's math (a warp has no other loads in flight).
  SmallVector<Value> init{x.negInf(), x.f(0.0)};
  for (int64_t i = 0; i < 4 * rowTiles; ++i)
    init.push_back(x.f(0.0));
  int64_t firstLoad = init.size();
  Value iters = emitWalkIterations(b, loc, geo, range.lo, range.hi);
  init.append(loadIf(b, loc, x.lt(x.c(0), iters), x.c(0)));
  Value headLane0 =
      arith::IndexCastOp::create(b, loc, b.getI32Type(), x.mul(r, x.c(8)));
  Value headLane1 = arith::AddIOp::create(b, loc, headLane0, x.ci32(4));
  auto loop = scf::ForOp::create(
      b, loc, x.c(0), iters, x.c(1), init,
      [&](OpBuilder &lb, Location ll, Value it, ValueRange carried) {
        MK y{lb, ll, w.elem};
        w.prefetch(lb, ll, it);
        Value nextIt = y.add(it, y.c(1));
        SmallVector<Value> ahead = loadIf(lb, ll, y.lt(nextIt, iters), nextIt);
        ValueRange loaded = carried.drop_front(firstLoad);
        SmallVector<SmallVector<Value>> kc(2);
        for (int64_t t = 0; t < 2; ++t)
          for (int64_t j = 0; j < d / 32; ++j)
            kc[t].push_back(loaded[t * (d / 32) + j]);
        SmallVector<Value> vc(loaded.begin() + kLoads,
                              loaded.begin() + kLoads + 4);
        SmallVector<Value> scores, insides, vs;
        if (k > 0)
          scores.assign(loaded.begin() + kLoads + 4, loaded.end());
        for (int64_t i = 0; i < 4; ++i) {
          Value inside, v;
          slotOf(lb, ll, it, pvKey(y, i), inside, v);
          insides.push_back(inside);
          vs.push_back(v);
        }
        SmallVector<Value> valid, gate;
        Value sawBad = emitBool(lb, ll, false);
        for (int64_t i = 0; i < 4; ++i) {
          auto [counts, g] = emitSlotGateOf(
              lb, ll, k, range, vs[i], k > 0 ? scores[i] : Value(), range.tau);
          valid.push_back(y.andI(insides[i], counts));
          gate.push_back(g);
          if (k > 0)
            sawBad = arith::OrIOp::create(
                lb, ll, sawBad,
                arith::XOrIOp::create(lb, ll, insides[i], valid.back()));
        }
        // S of head `quad`, keys (t, 2r + e), in log2 units; -inf where the
        // key does not count.
        SmallVector<Value> s;
        for (int64_t t = 0; t < 2; ++t) {
          SmallVector<Value> acc(4, y.f(0.0));
          for (int64_t st = 0; st < kSteps; ++st) {
            Value chunk = kc[t][st / 2];
            int64_t e = st % 2;
            acc = y.mma(qa[st],
                        {y.pairOf(chunk, 4 * e, chunk, 4 * e + 1),
                         y.pairOf(chunk, 4 * e + 2, chunk, 4 * e + 3)},
                        acc);
          }
          for (int64_t e = 0; e < 2; ++e)
            s.push_back(
                y.sel(valid[2 * t + e], y.fmul(acc[e], log2Scale), y.negInf()));
        }
        // The head's online softmax over the quad's 16 scores.
        Value m = carried[0], l = carried[1];
        Value tileMax = s[0];
        for (int64_t i = 1; i < 4; ++i)
          tileMax = y.fmax(tileMax, s[i]);
        Value mNew = y.fmax(m, y.xorReduce(tileMax, 1, 4, /*isMax=*/true));
        // No slot yet: exponents against 0 give exp2(-inf) = 0.
        Value mUse = y.sel(y.isNegInf(mNew), y.f(0.0), mNew);
        Value alpha = y.exp2(y.fsub(m, mUse));
        l = y.fmul(l, alpha);
        SmallVector<Value> pg;
        for (int64_t i = 0; i < 4; ++i) {
          Value p = y.exp2(y.fsub(s[i], mUse));
          l = y.fadd(l, p); // the sum leaves the gates out (SPEC 5)
          pg.push_back(y.fmul(p, gate[i]));
        }
        // B of PV: P^T, keys 2r, 2r + 1 (tile 0) and 2r + 8, 2r + 9.
        Value pb0 = y.pack(pg[0], pg[1]), pb1 = y.pack(pg[2], pg[3]);
        // The factors of this lane's O^T heads 2r, 2r + 1.
        Value alpha0 = y.shuffleIdx(alpha, headLane0);
        Value alpha1 = y.shuffleIdx(alpha, headLane1);
        SmallVector<Value> next{mNew, l};
        for (int64_t u = 0; u < rowTiles; ++u) {
          SmallVector<Value> acc;
          for (int64_t i = 0; i < 4; ++i)
            acc.push_back(
                y.fmul(carried[2 + 4 * u + i], i % 2 == 0 ? alpha0 : alpha1));
          // A of PV: V^T rows (columns) 2 M quad + u and + M + u, keys
          // (2r, 2r + 1) then (2r + 8, 2r + 9).
          std::array<Value, 4> va = {
              y.pairOf(vc[0], u, vc[1], u),
              y.pairOf(vc[0], rowTiles + u, vc[1], rowTiles + u),
              y.pairOf(vc[2], u, vc[3], u),
              y.pairOf(vc[2], rowTiles + u, vc[3], rowTiles + u)};
          for (Value v : y.mma(va, {pb0, pb1}, acc))
            next.push_back(v);
        }
        next.append(ahead);
        if (k > 0)
          emitIf(lb, ll, sawBad, [&](OpBuilder &ib, Location il) {
            memref::StoreOp::create(ib, il, KernelMath{ib, il}.ci32(1), w.sFlag,
                                    ValueRange{w.badFlag});
          });
        scf::YieldOp::create(lb, ll, next);
      });

  // The warp's states to workgroup memory: (max, sum) of head `quad` from
  // lane r = 0 of its quad, O^T columns from every lane.
  Value mOut = loop.getResult(0);
  Value lOut = x.xorReduce(loop.getResult(1), 1, 4);
  emitIf(
      b, loc, x.andI(inGroup, x.eq(r, x.c(0))),
      [&](OpBuilder &sb, Location sl) {
        memref::StoreOp::create(sb, sl, mOut, w.sM, ValueRange{w.warp, quad});
        memref::StoreOp::create(sb, sl, lOut, w.sL, ValueRange{w.warp, quad});
      });
  for (int64_t e = 0; e < 2; ++e) {
    Value head = x.add(x.mul(r, x.c(2)), x.c(e));
    emitIf(b, loc, x.lt(head, x.c(w.group)), [&](OpBuilder &sb, Location sl) {
      KernelMath z{sb, sl};
      for (int64_t u = 0; u < rowTiles; ++u)
        for (int64_t half = 0; half < 2; ++half) {
          Value col = z.add(z.mul(quad, z.c(vCols)), z.c(half * rowTiles + u));
          memref::StoreOp::create(sb, sl,
                                  loop.getResult(2 + 4 * u + 2 * half + e),
                                  w.sO, ValueRange{w.warp, head, col});
        }
    });
  }
}
