//===- ChunkedSelection.cpp - SPEC 4 selection, parallel over chunks ------===//
//
// See ChunkedSelection.h for the steps. Notes on exactness:
// - Lists hold k + 1 entries: the (k + 1)-th tells whether a prefix has more
//   than k candidates (tau finite) without a separate count.
// - A boundary's tau lies in [z(k) - 1, z(k)) (z(k) its k-th largest
//   score): f(z(k) - 1) >= k and f(z(k)) <= k - 1. The search keeps that
//   bracket; a step evaluates, in one pass, the piece of f just right of a
//   point x (U scores above x + 1, M in (x, x + 1] with their sum, and the
//   next breakpoint) and stops when the piece's root lies inside it: that
//   is the same piece formula as the incremental solver's, so both agree to
//   rounding. Otherwise it tries the piece's root, then the secant, then
//   bisects.
// - A chunk's searched queries have tau in [tau_lo, tau_hi]: tau_hi is the
//   boundary tau after it; tau_lo the one before it, or z(k) - 1 of the
//   first prefix past k candidates in the chunk where the count passes k.
//   Prefix scores whose breakpoints (z and z - 1) lie outside (below tau_lo,
//   or above tau_hi plus a margin for rounding) keep their class for the
//   whole chunk, so a query's search only counts them; the rest (a narrow
//   band, as tau moves little over one chunk) it classifies at each point,
//   with the chunk's candidates up to its own.
//
//===----------------------------------------------------------------------===//
#include "ChunkedSelection.h"

#include "LoopUtils.h"
#include "TauSolver.h"
#include "TopKHeap.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

static constexpr double kInf = std::numeric_limits<double>::infinity();
/// Chunks per row when the length is picked. A query's search passes over
/// its chunk's candidates up to its own, so shorter chunks make it cheaper,
/// but the scan and the boundary search grow with the chunk count (with the
/// per-query thresholds of fbe539e on an H100, 128 chunks at P1 32k took
/// 8.88 ms against 9.68 ms for 252 and 12.6 ms for 504), and each chunk's
/// band scratch holds up to C scores (132 MB at P1 32k).
static constexpr int64_t kMaxChunks = 128;
/// Shortest picked chunk: at P1 8k and P3 (fbe539e, H100) 64 and 128 were
/// within 5% of each other end to end, 64 slower at P3.
static constexpr int64_t kMinChunk = 128;
/// Threads per block of the per-candidate, per-entry and per-query kernels,
/// and of the boundary search's finish (few threads, each running its own
/// number of passes over its prefix: sharing a warp would serialize them,
/// and 32 per block would leave most SMs idle, so each gets a block).
static constexpr int64_t kWideBlock = 128;
static constexpr int64_t kChunkBlock = 1;
/// The boundary search stops after this many passes (bisection alone
/// reaches f64 resolution well before), keeping its lower bracket.
static constexpr int64_t kMaxSearchSteps = 100;
/// The boundary search's split rounds before the unresolved boundaries
/// finish alone. A round is one kernel: the search lands within 3 to 10
/// steps on random scores, so the finish rarely has work, and the rounds
/// after every boundary is found launch kernels that exit at once.
static constexpr int64_t kSplitSearchSteps = 16;
/// A round's threads each take one chunk of a boundary's prefix; the last
/// of a group of kJoinGroup chunks to finish joins the group's partial
/// pieces, and the last group of the boundary joins the groups and steps.
/// One thread joining every chunk (up to 130 at P1 32k, as a separate step
/// kernel did) took 0.036-0.040 ms of an H100 per round on 16 SMs; two
/// levels keep each serial join at most 16 long.
static constexpr int64_t kJoinGroup = 16;
/// Segment length of the first lists' passes over a chunk's prefix: one
/// thread per segment, short enough that the threads fill the GPU.
static constexpr int64_t kListSegment = 256;
/// Per segment of a chunk's prefix, the band seed counts candidates, heaped
/// UPPER and MIDDLE scores, and unheaped UPPER and MIDDLE ones.
static constexpr int64_t kBandCounts = 5;
/// A query's own candidates are classified once per chunk, in segments of
/// this many (one thread each): a query then sums the counts of the
/// segments before its own instead of passing over all its candidates.
static constexpr int64_t kOwnSegment = 32;
/// Per chunk candidate, ownCounts holds finite candidates, those that stay
/// UPPER, those that stay MIDDLE, and those in the band.
static constexpr int64_t kOwnCounts = 4;
/// Unroll factors of the loops that read a run of entries and only
/// accumulate, or store padding (emitForCarryingUnrolled): 8 for small
/// bodies (a load or a few, counted or summed), 4 where each entry is
/// classified in f64.
static constexpr int64_t kUnrollScan = 8;
static constexpr int64_t kUnrollWide = 4;

namespace {
/// Small builders local to this file.
struct B {
  OpBuilder &b;
  Location loc;

  Value idx(int64_t v) { return emitIndex(b, loc, v); }
  Value f64(double v) {
    return arith::ConstantFloatOp::create(b, loc, b.getF64Type(),
                                          llvm::APFloat(v));
  }
  Value add(Value x, Value y) {
    return x.getType().isIndex()
               ? arith::AddIOp::create(b, loc, x, y).getResult()
               : arith::AddFOp::create(b, loc, x, y).getResult();
  }
  Value sub(Value x, Value y) {
    return x.getType().isIndex()
               ? arith::SubIOp::create(b, loc, x, y).getResult()
               : arith::SubFOp::create(b, loc, x, y).getResult();
  }
  Value mul(Value x, Value y) {
    return x.getType().isIndex()
               ? arith::MulIOp::create(b, loc, x, y).getResult()
               : arith::MulFOp::create(b, loc, x, y).getResult();
  }
  Value div(Value x, Value y) { return arith::DivUIOp::create(b, loc, x, y); }
  Value rem(Value x, Value y) { return arith::RemUIOp::create(b, loc, x, y); }
  Value min(Value x, Value y) { return arith::MinSIOp::create(b, loc, x, y); }
  Value max(Value x, Value y) { return arith::MaxSIOp::create(b, loc, x, y); }
  Value cmp(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, loc, p, x, y);
  }
  Value cmpf(arith::CmpFPredicate p, Value x, Value y) {
    return arith::CmpFOp::create(b, loc, p, x, y);
  }
  /// The smaller of two f64 that are never NaN (the breakpoints): a compare
  /// and a select, where arith.minimumf's NaN and signed-zero rules cost
  /// about 15 SASS instructions on the search's innermost loops (a zero's
  /// sign makes no difference to a breakpoint or to tau).
  Value minF(Value x, Value y) {
    return sel(cmpf(arith::CmpFPredicate::OLT, y, x), y, x);
  }
  Value lt(Value x, Value y) { return cmp(arith::CmpIPredicate::slt, x, y); }
  Value le(Value x, Value y) { return cmp(arith::CmpIPredicate::sle, x, y); }
  Value eq(Value x, Value y) { return cmp(arith::CmpIPredicate::eq, x, y); }
  Value sel(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, loc, c, x, y);
  }
  Value andI(Value x, Value y) { return arith::AndIOp::create(b, loc, x, y); }
  Value orI(Value x, Value y) { return arith::OrIOp::create(b, loc, x, y); }
  Value notI(Value x) {
    return arith::XOrIOp::create(b, loc, x, emitBool(b, loc, true));
  }
  /// 1 or 0 as an index.
  Value count(Value cond) { return sel(cond, idx(1), idx(0)); }
  /// Loops that count at most a chunk's entries count in i32 (on a GPU an
  /// index count costs two selects and a 64-bit add per entry): `n` plus
  /// 1 where `cond`, and the count widened to an index after the loop.
  Value zero32() {
    return arith::ConstantIntOp::create(b, loc, b.getI32Type(), 0);
  }
  Value inc32(Value n, Value cond) {
    return arith::AddIOp::create(
        b, loc, n, arith::ExtUIOp::create(b, loc, b.getI32Type(), cond));
  }
  Value widen(Value n32) {
    return arith::IndexCastUIOp::create(b, loc, b.getIndexType(), n32);
  }
  Value toF64(Value f32) {
    return arith::ExtFOp::create(b, loc, b.getF64Type(), f32);
  }
  Value load(Value buf, ValueRange at) {
    return memref::LoadOp::create(b, loc, buf, at);
  }
  void store(Value v, Value buf, ValueRange at) {
    memref::StoreOp::create(b, loc, v, buf, at);
  }
  Value ceilDiv(Value x, Value y) { return div(add(x, sub(y, idx(1))), y); }
};
} // namespace

static Value allocScratch(OpBuilder &b, Location loc, Type elementType,
                          ArrayRef<Value> sizes) {
  SmallVector<int64_t> shape(sizes.size(), ShapedType::kDynamic);
  return memref::AllocOp::create(b, loc, MemRefType::get(shape, elementType),
                                 sizes);
}

/// Stores an index value into an integer (or index) memref.
static void storeIndexAs(OpBuilder &b, Location loc, Value v, Value buf,
                         ValueRange at) {
  Type elem = cast<MemRefType>(buf.getType()).getElementType();
  if (!elem.isIndex())
    v = arith::IndexCastOp::create(b, loc, elem, v);
  memref::StoreOp::create(b, loc, v, buf, at);
}

ChunkedSelection::ChunkedSelection(Operation *anchor, int64_t k, int64_t w,
                                   Value scores, Value numQueries,
                                   bool inKernel, int64_t chunk)
    : anchor(anchor), k(k), w(w), scores(scores), numQueries(numQueries),
      inKernel(inKernel), chunkOption(chunk) {}

Value ChunkedSelection::emitIsCandidate(OpBuilder &b, Location loc, Value z,
                                        bool report) const {
  return report ? emitIsCandidateScore(b, loc, anchor, z, inKernel)
                : emitIsFiniteScore(b, loc, z);
}

Value ChunkedSelection::emitRowIndex(OpBuilder &b, Location loc, Value bi,
                                     Value h) const {
  B x{b, loc};
  return x.add(x.mul(bi, heads), h);
}

Value ChunkedSelection::emitScore(OpBuilder &b, Location loc, Value bi, Value h,
                                  Value j) const {
  return memref::LoadOp::create(b, loc, scores, ValueRange{bi, h, j});
}

Value ChunkedSelection::emitReaches(OpBuilder &b, Location loc, Value z,
                                    Value j, Value thetaS, Value thetaP) const {
  // At least as strong as theta: theta itself, or stronger.
  B x{b, loc};
  Value same =
      x.andI(x.cmpf(arith::CmpFPredicate::OEQ, z, thetaS), x.eq(j, thetaP));
  return x.orI(same, emitStronger(b, loc, z, j, thetaS, thetaP));
}

Value ChunkedSelection::firstListWidth(OpBuilder &b, Location loc) const {
  auto type = cast<MemRefType>(firstLists.buf.getType());
  return emitDim(b, loc, firstLists.buf, type.getRank() - 1);
}

void ChunkedSelection::emitSizes(OpBuilder &b, Location loc) {
  B x{b, loc};
  batch = emitDim(b, loc, scores, 0);
  heads = emitDim(b, loc, scores, 1);
  numKeys = emitDim(b, loc, scores, 2);
  Value wIdx = x.idx(w);
  candidates = x.max(x.idx(0), x.sub(numKeys, wIdx));
  lag = x.sub(x.sub(numKeys, numQueries), wIdx);
  chunkLen = chunkOption > 0 ? x.idx(chunkOption)
                             : x.max(x.idx(kMinChunk),
                                     x.ceilDiv(candidates, x.idx(kMaxChunks)));
  chunks = x.ceilDiv(candidates, chunkLen);
  listCap = x.max(x.idx(1), x.min(x.idx(k), candidates));
}

void ChunkedSelection::emitThresholds(OpBuilder &b, Location loc,
                                      const FirstLists &firsts) {
  assert(k >= 1 && "k = 0 selects nothing");
  if (!chunks)
    emitSizes(b, loc);
  B x{b, loc};
  Value rows = x.mul(batch, heads);
  Value rowChunks = x.mul(rows, chunks);
  // A list holds at most k + 1 distinct candidates.
  Value entries = x.add(listCap, x.idx(1));
  Type f32 = b.getF32Type(), f64 = b.getF64Type(), index = b.getIndexType();
  for (int i = 0; i < 2; ++i) {
    listScores[i] = allocScratch(b, loc, f32, {rows, chunks, entries});
    listPos[i] = allocScratch(b, loc, index, {rows, chunks, entries});
    this->listLen[i] = allocScratch(b, loc, index, {rows, chunks});
  }
  sortedScores = allocScratch(b, loc, f32, {rows, chunks, chunkLen});
  sortedPos = allocScratch(b, loc, index, {rows, chunks, chunkLen});
  sortedAbove = allocScratch(b, loc, index, {rows, chunks, chunkLen});
  sortedLen = allocScratch(b, loc, index, {rows, chunks});
  boundaryTau = allocScratch(b, loc, f64, {rows, x.add(chunks, x.idx(1))});
  queryTau = allocScratch(b, loc, f64, {rows, numQueries});
  thetaScore = allocScratch(b, loc, f32, {rows, numQueries});
  thetaPos = allocScratch(b, loc, index, {rows, numQueries});
  // A band's MIDDLE may hold every candidate; its UPPER at most k (f = k
  // at the chunk's lower boundary tau), so it is sized like the lists.
  Value capacity = x.max(candidates, x.idx(1));
  bandUpper = allocScratch(b, loc, f32, {rowChunks, entries});
  bandMiddle = allocScratch(b, loc, f32, {rowChunks, capacity});
  seedCounts = allocScratch(b, loc, index, {rows, chunks, x.idx(kBandCounts)});
  seedSums = allocScratch(b, loc, f64, {rows, chunks});
  chunkLo = allocScratch(b, loc, f64, {rows, chunks});
  firstLists = firsts;

  emitChunkLists(b, loc);
  emitScan(b, loc);
  emitBoundaryTaus(b, loc);
  emitQueryThresholds(b, loc);
  emitFirstLists(b, loc);
}

void ChunkedSelection::emitDealloc(OpBuilder &b, Location loc) const {
  for (int i = 0; i < 2; ++i)
    for (Value v : {listScores[i], listPos[i], listLen[i]})
      memref::DeallocOp::create(b, loc, v);
  for (Value v : {sortedScores, sortedPos, sortedAbove, sortedLen, boundaryTau,
                  queryTau, thetaScore, thetaPos, bandUpper, bandMiddle,
                  seedCounts, seedSums, chunkLo})
    memref::DeallocOp::create(b, loc, v);
}

// Step 1: one thread per candidate j ranks it inside its chunk; the k + 1
// strongest finite ones are the chunk's sorted list, and every finite one
// goes to the chunk's sorted scores.
void ChunkedSelection::emitChunkLists(OpBuilder &b, Location loc) {
  emitParallelQueryBlocks(
      b, loc, batch, heads, candidates, kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value j) {
        B x{nb, nl};
        Value r = emitRowIndex(nb, nl, bi, h);
        Value c = x.div(j, chunkLen);
        Value start = x.mul(c, chunkLen);
        Value end = x.min(x.add(start, chunkLen), candidates);
        Value z = emitScore(nb, nl, bi, h, j);
        Value own = emitIsCandidate(nb, nl, z, /*report=*/true);
        SmallVector<Value> cr = emitForCarryingUnrolled(
            nb, nl, kUnrollScan, start, end, ValueRange{x.zero32(), x.zero32()},
            [&](OpBuilder &fb, Location fl, Value i,
                ValueRange carried) -> SmallVector<Value> {
              B y{fb, fl};
              Value zi = emitScore(fb, fl, bi, h, i);
              Value fin = emitIsCandidate(fb, fl, zi, /*report=*/false);
              Value beats = y.andI(fin, emitStronger(fb, fl, zi, i, z, j));
              return {y.inc32(carried[0], fin), y.inc32(carried[1], beats)};
            });
        cr = {x.widen(cr[0]), x.widen(cr[1])};
        emitIf(nb, nl, own, [&](OpBuilder &ib, Location il) {
          B y{ib, il};
          y.store(z, sortedScores, {r, c, cr[1]});
          y.store(j, sortedPos, {r, c, cr[1]});
        });
        Value keep = x.andI(own, x.le(cr[1], x.idx(k)));
        emitIf(nb, nl, keep, [&](OpBuilder &ib, Location il) {
          B y{ib, il};
          y.store(z, listScores[0], {r, c, cr[1]});
          y.store(j, listPos[0], {r, c, cr[1]});
        });
        emitIf(nb, nl, x.eq(j, start), [&](OpBuilder &ib, Location il) {
          B y{ib, il};
          y.store(y.min(cr[0], y.idx(k + 1)), listLen[0], {r, c});
          y.store(cr[0], sortedLen, {r, c});
        });
      });
}

/// Number of entries of the sorted list (r, c) of `len` entries that are
/// stronger than (s, p): a binary search.
static Value emitCountStronger(OpBuilder &b, Location loc, Value scoresBuf,
                               Value posBuf, Value r, Value c, Value len,
                               Value s, Value p) {
  return emitFirstTrue(
      b, loc, emitIndex(b, loc, 0), len,
      [&](OpBuilder &nb, Location nl, Value mid) {
        B x{nb, nl};
        Value ms = x.load(scoresBuf, {r, c, mid});
        Value mp = x.load(posBuf, {r, c, mid});
        return x.notI(emitStronger(nb, nl, ms, mp, s, p));
      });
}

// Step 2: Hillis-Steele inclusive scan over the chunk lists, in rounds of
// distance d = 1, 2, 4, ...: list c merges list c - d into itself. Each
// output entry is placed by its own thread: its rank in the merged order is
// its index plus the number of stronger entries in the other list.
// Lists c < d are final at round d and pass to the other buffer unchanged.
// That buffer already holds those below d / 2 (final when it was read, one
// round before), so a round copies only [d / 2, d) and starts its threads
// there.
void ChunkedSelection::emitScan(OpBuilder &b, Location loc) {
  B x{b, loc};
  Type index = b.getIndexType();
  // One thread per entry the two merged lists can hold: min(k, candidates)
  // + 1 each (the lists' width), never k + 1 when k exceeds the candidates
  // (k may be 2^31 over a handful of keys).
  Value entries = x.add(listCap, x.idx(1));
  Value perChunk = x.mul(entries, x.idx(2));
  auto pick = [&](OpBuilder &nb, Location nl, Value parity, Value *bufs,
                  bool other) {
    B y{nb, nl};
    Value isZero = y.eq(parity, y.idx(0));
    return other ? y.sel(isZero, bufs[1], bufs[0])
                 : y.sel(isZero, bufs[0], bufs[1]);
  };
  auto loop = scf::WhileOp::create(
      b, loc, TypeRange{index, index}, ValueRange{x.idx(1), x.idx(0)},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        B y{nb, nl};
        scf::ConditionOp::create(nb, nl, y.lt(args[0], chunks), args);
      },
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        B y{nb, nl};
        Value d = args[0], parity = args[1];
        Value srcS = pick(nb, nl, parity, listScores, false);
        Value srcP = pick(nb, nl, parity, listPos, false);
        Value srcL = pick(nb, nl, parity, listLen, false);
        Value dstS = pick(nb, nl, parity, listScores, true);
        Value dstP = pick(nb, nl, parity, listPos, true);
        Value dstL = pick(nb, nl, parity, listLen, true);
        Value first = y.div(d, y.idx(2));
        Value work = y.mul(y.sub(chunks, first), perChunk);
        emitParallelQueryBlocks(
            nb, nl, batch, heads, work, kWideBlock,
            [&](OpBuilder &pb, Location pl, Value bi, Value h, Value item) {
              B z{pb, pl};
              Value r = emitRowIndex(pb, pl, bi, h);
              Value c = z.add(first, z.div(item, perChunk));
              Value i = z.rem(item, perChunk);
              Value isFirst = z.eq(i, z.idx(0));
              Value copies = z.lt(c, d);
              emitIf(pb, pl, copies, [&](OpBuilder &cb, Location cl) {
                B u{cb, cl};
                Value len = u.load(srcL, {r, c});
                emitIf(cb, cl, u.lt(i, len), [&](OpBuilder &sb, Location sl) {
                  B v{sb, sl};
                  v.store(v.load(srcS, {r, c, i}), dstS, {r, c, i});
                  v.store(v.load(srcP, {r, c, i}), dstP, {r, c, i});
                });
                emitIf(cb, cl, isFirst, [&](OpBuilder &sb, Location sl) {
                  B{sb, sl}.store(len, dstL, {r, c});
                });
              });
              emitIf(pb, pl, z.notI(copies), [&](OpBuilder &mb, Location ml) {
                B u{mb, ml};
                Value a = u.sub(c, d);
                Value lenA = u.load(srcL, {r, a});
                Value lenB = u.load(srcL, {r, c});
                Value inA = u.lt(i, entries);
                Value own = u.sel(inA, a, c), other = u.sel(inA, c, a);
                Value at = u.sel(inA, i, u.sub(i, entries));
                Value ownLen = u.sel(inA, lenA, lenB);
                Value otherLen = u.sel(inA, lenB, lenA);
                // The entry stays (rank <= k) iff at most room = k - at
                // entries of the other list are stronger, i.e. unless that
                // list's entry `room` is: one load decides, so the half of
                // the entries that full lists drop skip the search, and
                // the rest search only [0, room).
                emitIf(
                    mb, ml, u.lt(at, ownLen), [&](OpBuilder &sb, Location sl) {
                      B v{sb, sl};
                      Value s = v.load(srcS, {r, own, at});
                      Value p = v.load(srcP, {r, own, at});
                      Value room = v.sub(v.idx(k), at);
                      Value roomIn = v.lt(room, otherLen);
                      Value dropped = emitIfElse(
                          sb, sl, roomIn,
                          [&](OpBuilder &tb,
                              Location tl) -> SmallVector<Value> {
                            B t{tb, tl};
                            return {emitStronger(
                                tb, tl, t.load(srcS, {r, other, room}),
                                t.load(srcP, {r, other, room}), s, p)};
                          },
                          [&](OpBuilder &tb,
                              Location tl) -> SmallVector<Value> {
                            return {emitBool(tb, tl, false)};
                          })[0];
                      emitIf(sb, sl, v.notI(dropped),
                             [&](OpBuilder &tb, Location tl) {
                               B t{tb, tl};
                               Value rank =
                                   t.add(at, emitCountStronger(
                                                 tb, tl, srcS, srcP, r, other,
                                                 t.min(otherLen, room), s, p));
                               t.store(s, dstS, {r, c, rank});
                               t.store(p, dstP, {r, c, rank});
                             });
                    });
                emitIf(mb, ml, isFirst, [&](OpBuilder &sb, Location sl) {
                  B v{sb, sl};
                  v.store(v.min(v.add(lenA, lenB), v.idx(k + 1)), dstL, {r, c});
                });
              });
            });
        scf::YieldOp::create(
            nb, nl, ValueRange{y.mul(d, y.idx(2)), y.sub(y.idx(1), parity)});
      });
  Value parity = loop.getResult(1);
  finalScores = pick(b, loc, parity, listScores, false);
  finalPos = pick(b, loc, parity, listPos, false);
  finalLen = pick(b, loc, parity, listLen, false);
}

// The boundary search (step 3) in pieces, so that its passes can be split
// over segments of the prefix: a pass evaluates the piece of f just right of
// a point `at` (UPPER count, MIDDLE count and sum, next breakpoint), a step
// moves the bracket.

/// The pass's carried values for an empty range: UPPER count, MIDDLE count
/// (index), MIDDLE sum, smallest breakpoint right of `at` (f64).
static SmallVector<Value> emitPieceInit(OpBuilder &b, Location loc) {
  B x{b, loc};
  return {x.idx(0), x.idx(0), x.f64(0.0), x.f64(kInf)};
}

/// Two passes' values over disjoint ranges, combined.
static SmallVector<Value> emitPieceJoin(OpBuilder &b, Location loc,
                                        ValueRange p, ValueRange q) {
  B x{b, loc};
  return {x.add(p[0], q[0]), x.add(p[1], q[1]), x.add(p[2], q[2]),
          x.minF(p[3], q[3])};
}

/// For each (x, shift): the entries of row (r, c) of the descending
/// `sorted` among its first `n` whose f64 value (minus `shift`, when not 0)
/// exceeds `x`. Binary searches, all in one loop (emitFirstTrueMany).
static SmallVector<Value>
emitCountsAbove(OpBuilder &b, Location loc, Value sorted, Value r, Value c,
                Value n, ArrayRef<std::pair<Value, double>> xs) {
  return emitFirstTrueMany(
      b, loc, emitIndex(b, loc, 0), n, xs.size(),
      [&](OpBuilder &nb, Location nl, unsigned i, Value mid) {
        B y{nb, nl};
        Value z = y.toF64(y.load(sorted, {r, c, mid}));
        if (xs[i].second != 0.0)
          z = y.sub(z, y.f64(xs[i].second));
        return y.notI(y.cmpf(arith::CmpFPredicate::OGT, z, xs[i].first));
      });
}

SmallVector<Value> ChunkedSelection::emitSortedPiece(OpBuilder &b, Location loc,
                                                     Value r, Value c,
                                                     Value at) const {
  // Strongest first, so UPPER (z > at + 1) is a prefix [0, u) and MIDDLE
  // (at < z <= at + 1) the run [u, m) after it; the smallest breakpoints
  // right of `at` are the weakest of each: z[m - 1] and z[u - 1] - 1.
  B y{b, loc};
  Value one = y.f64(1.0), inf = y.f64(kInf);
  Value n = y.load(sortedLen, {r, c});
  SmallVector<Value> um = emitCountsAbove(b, loc, sortedScores, r, c, n,
                                          {{y.add(at, one), 0.0}, {at, 0.0}});
  Value u = um[0], m = um[1];
  Value sum = emitForCarryingUnrolled(
      b, loc, kUnrollScan, u, m, ValueRange{y.f64(0.0)},
      [&](OpBuilder &fb, Location fl, Value i,
          ValueRange acc) -> SmallVector<Value> {
        B v{fb, fl};
        return {v.add(acc[0], v.toF64(v.load(sortedScores, {r, c, i})))};
      })[0];
  auto weakest = [&](Value end, Value hasAny, double shift) {
    return emitIfElse(
        b, loc, hasAny,
        [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
          B t{tb, tl};
          Value z = t.toF64(t.load(sortedScores, {r, c, t.sub(end, t.idx(1))}));
          return {shift == 0.0 ? z : t.sub(z, t.f64(shift))};
        },
        [&](OpBuilder &, Location) -> SmallVector<Value> { return {inf}; })[0];
  };
  Value bpMid = weakest(m, y.lt(u, m), 0.0);
  Value bpUp = weakest(u, y.lt(y.idx(0), u), 1.0);
  return {u, y.sub(m, u), sum, y.minF(bpMid, bpUp)};
}

/// The search's carried values: lo, f(lo), hi, f(hi), next x (f64), steps
/// (index), found (i1), tau (f64), last failed (i1). It starts at
/// [z(k) - 1, z(k)], where z(k) is the prefix's k-th strongest score.
static SmallVector<Value> emitSearchInit(OpBuilder &b, Location loc, int64_t k,
                                         Value zk) {
  B x{b, loc};
  Value kF = x.f64(static_cast<double>(k));
  Value lo0 = x.sub(zk, x.f64(1.0));
  return {lo0,
          kF,
          zk,
          x.sub(kF, x.f64(1.0)),
          lo0,
          x.idx(0),
          emitBool(b, loc, false),
          lo0,
          emitBool(b, loc, false)};
}

/// One step of the search from the piece `pc` at its next x.
static SmallVector<Value> emitSearchStep(OpBuilder &b, Location loc, int64_t k,
                                         ValueRange a, ValueRange pc) {
  B y{b, loc};
  Type f64 = b.getF64Type();
  Value kF = y.f64(static_cast<double>(k));
  Value lo = a[0], flo = a[1], hi = a[2], fhi = a[3], at = a[4];
  Value steps = a[5], failed = a[8];
  auto toF64 = [&](Value i) {
    return arith::UIToFPOp::create(
        b, loc, f64, arith::IndexCastUIOp::create(b, loc, b.getI64Type(), i));
  };
  Value uF = toF64(pc[0]), mF = toF64(pc[1]);
  Value fx = y.sub(y.add(uF, pc[2]), y.mul(mF, at));
  // The first point, z(k) - 1, is a lower bracket by construction;
  // rounding in fx must not say otherwise.
  Value ok =
      y.orI(y.eq(steps, y.idx(0)), y.cmpf(arith::CmpFPredicate::OGE, fx, kF));
  Value hasMid = y.cmp(arith::CmpIPredicate::ugt, pc[1], y.idx(0));
  Value root = arith::DivFOp::create(b, loc, y.sub(y.add(uF, pc[2]), kF), mF);
  Value belowK = y.cmp(arith::CmpIPredicate::ult, pc[0], y.idx(k));
  Value inPiece = y.cmpf(arith::CmpFPredicate::OLE, root, pc[3]);
  Value exact = y.andI(y.andI(hasMid, belowK), inPiece);
  Value flat = y.andI(y.notI(hasMid), y.eq(pc[0], y.idx(k)));
  Value found = y.andI(ok, y.orI(exact, flat));
  Value tau = y.sel(exact, arith::MaximumFOp::create(b, loc, root, at), pc[3]);
  Value nlo = y.sel(ok, at, lo), nflo = y.sel(ok, fx, flo);
  Value nhi = y.sel(ok, hi, at), nfhi = y.sel(ok, fhi, fx);
  Value mid = y.mul(y.add(nlo, nhi), y.f64(0.5));
  auto inside = [&](Value v) {
    return y.andI(y.cmpf(arith::CmpFPredicate::OGT, v, nlo),
                  y.cmpf(arith::CmpFPredicate::OLT, v, nhi));
  };
  // From a new lower point: its piece's root (Newton). After a miss: the
  // secant, and bisection after two misses in a row.
  Value secant = y.add(nlo, arith::DivFOp::create(
                                b, loc, y.mul(y.sub(nhi, nlo), y.sub(nflo, kF)),
                                y.sub(nflo, nfhi)));
  Value newton = y.andI(hasMid, inside(root));
  Value tryNewton = y.andI(ok, newton);
  Value trySecant = y.andI(y.andI(y.notI(ok), y.notI(failed)), inside(secant));
  Value next = y.sel(tryNewton, root, y.sel(trySecant, secant, mid));
  return {nlo,   nflo, nhi,       nfhi, next, y.add(steps, y.idx(1)),
          found, tau,  y.notI(ok)};
}

SmallVector<Value> ChunkedSelection::emitFinishSearch(OpBuilder &b,
                                                      Location loc, Value r,
                                                      Value c,
                                                      ValueRange init) const {
  SmallVector<Type> types(ValueRange(init).getTypes());
  auto loop = scf::WhileOp::create(
      b, loc, types, init,
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        B y{nb, nl};
        Value more = y.andI(y.notI(a[6]), y.lt(a[5], y.idx(kMaxSearchSteps)));
        scf::ConditionOp::create(nb, nl, more, a);
      },
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        SmallVector<Value> pc = emitForCarrying(
            nb, nl, emitIndex(nb, nl, 0), c, emitPieceInit(nb, nl),
            [&](OpBuilder &fb, Location fl, Value seg, ValueRange acc) {
              return emitPieceJoin(fb, fl, acc,
                                   emitSortedPiece(fb, fl, r, seg, a[4]));
            });
        scf::YieldOp::create(nb, nl, emitSearchStep(nb, nl, k, a, pc));
      });
  return loop.getResults();
}

/// The search's result: its tau when found, else its lower bracket.
static Value emitSearchResult(OpBuilder &b, Location loc, ValueRange a) {
  return B{b, loc}.sel(a[6], a[7], a[0]);
}

// Step 3: the exact tau of the candidates before each chunk boundary
// (boundary c is position min(c Lc, C); boundary N is the whole row). Every
// boundary searches at once: kSplitSearchSteps rounds of one kernel over
// (boundary, chunk of its prefix), each thread evaluating its chunk's piece
// at the boundary's next point (a binary search in the chunk's sorted
// scores, not a pass over its candidates), the last arrivals joining the
// pieces by groups and stepping; then one thread per boundary still
// unresolved finishes alone (rarely any: the search lands within a few
// steps).
void ChunkedSelection::emitBoundaryTaus(OpBuilder &b, Location loc) {
  B x{b, loc};
  Type f64 = b.getF64Type(), index = b.getIndexType();
  Value bounds = x.add(chunks, x.idx(1));
  Value rows = x.mul(batch, heads);
  // Boundary c's prefix is chunks [0, c): one segment per chunk.
  Value segs = x.max(x.idx(1), chunks);
  // State: the 9 carried values as 6 f64 (lo, flo, hi, fhi, at, tau) and
  // 3 index (steps, found, failed); partial pieces per segment.
  Value stateF = allocScratch(b, loc, f64, {rows, bounds, x.idx(6)});
  Value stateI = allocScratch(b, loc, index, {rows, bounds, x.idx(3)});
  Value partI = allocScratch(b, loc, index, {rows, bounds, segs, x.idx(2)});
  Value partF = allocScratch(b, loc, f64, {rows, bounds, segs, x.idx(2)});
  // The group joins, laid out as the partials, and the arrival counters of
  // each group and boundary (zeroed by the init kernel, reset by each
  // group's and boundary's last arrival).
  Value groups = x.ceilDiv(segs, x.idx(kJoinGroup));
  Value groupI = allocScratch(b, loc, index, {rows, bounds, groups, x.idx(2)});
  Value groupF = allocScratch(b, loc, f64, {rows, bounds, groups, x.idx(2)});
  Type i32 = b.getI32Type();
  Value groupArrivals = allocScratch(b, loc, i32, {rows, bounds, groups});
  Value boundArrivals = allocScratch(b, loc, i32, {rows, bounds});
  auto loadPart = [](OpBuilder &lb, Location ll, Value bufI, Value bufF,
                     Value r, Value c, Value i) -> SmallVector<Value> {
    B v{lb, ll};
    return {
        v.load(bufI, {r, c, i, v.idx(0)}), v.load(bufI, {r, c, i, v.idx(1)}),
        v.load(bufF, {r, c, i, v.idx(0)}), v.load(bufF, {r, c, i, v.idx(1)})};
  };
  auto storeState = [&](OpBuilder &sb, Location sl, Value r, Value c,
                        ValueRange a) {
    B y{sb, sl};
    Value vals[6] = {a[0], a[1], a[2], a[3], a[4], a[7]};
    for (int i = 0; i < 6; ++i)
      y.store(vals[i], stateF, {r, c, y.idx(i)});
    y.store(a[5], stateI, {r, c, y.idx(0)});
    y.store(y.count(a[6]), stateI, {r, c, y.idx(1)});
    y.store(y.count(a[8]), stateI, {r, c, y.idx(2)});
  };
  auto loadState = [&](OpBuilder &sb, Location sl, Value r,
                       Value c) -> SmallVector<Value> {
    B y{sb, sl};
    auto f = [&](int i) { return y.load(stateF, {r, c, y.idx(i)}); };
    auto flag = [&](int i) {
      return y.cmp(arith::CmpIPredicate::ne, y.load(stateI, {r, c, y.idx(i)}),
                   y.idx(0));
    };
    return {f(0),    f(1), f(2),   f(3), f(4), y.load(stateI, {r, c, y.idx(0)}),
            flag(1), f(5), flag(2)};
  };
  // Whether boundary c needs a search (more than k candidates before it);
  // without one its tau is -inf (found).
  auto needsSearch = [&](OpBuilder &sb, Location sl, Value r, Value c) {
    B y{sb, sl};
    Value hasPrefix = y.cmp(arith::CmpIPredicate::ugt, c, y.idx(0));
    // Chunk c - 1's list exists only for c > 0.
    Value search = emitIfElse(
        sb, sl, hasPrefix,
        [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
          B t{tb, tl};
          Value len = t.load(finalLen, {r, t.sub(c, t.idx(1))});
          return {t.cmp(arith::CmpIPredicate::ugt, len, t.idx(k))};
        },
        [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
          return {emitBool(tb, tl, false)};
        })[0];
    return search;
  };

  emitParallelQueryBlocks(
      b, loc, batch, heads, bounds, kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value c) {
        B y{nb, nl};
        Value r = emitRowIndex(nb, nl, bi, h);
        Value search = needsSearch(nb, nl, r, c);
        Value negInf = y.f64(-kInf);
        // The list of chunks 0..c-1 holds k + 1 entries when searched.
        Value zk = emitIfElse(
            nb, nl, search,
            [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
              B t{tb, tl};
              return {t.toF64(
                  t.load(finalScores, {r, t.sub(c, t.idx(1)), t.idx(k - 1)}))};
            },
            [&](OpBuilder &, Location) -> SmallVector<Value> {
              return {negInf};
            })[0];
        SmallVector<Value> init = emitSearchInit(nb, nl, k, zk);
        // A boundary without a search is found at -inf.
        init[6] = y.notI(search);
        init[7] = y.sel(search, init[7], negInf);
        init[0] = y.sel(search, init[0], negInf);
        storeState(nb, nl, r, c, init);
        Value zero = arith::ConstantIntOp::create(nb, nl, i32, 0);
        y.store(zero, boundArrivals, {r, c});
        emitFor(nb, nl, y.idx(0), groups,
                [&](OpBuilder &fb, Location fl, Value g) {
                  B{fb, fl}.store(zero, groupArrivals, {r, c, g});
                });
      });
  auto storePart = [](OpBuilder &sb, Location sl, Value bufI, Value bufF,
                      Value r, Value c, Value i, ValueRange pc) {
    B z{sb, sl};
    for (int f = 0; f < 2; ++f) {
      z.store(pc[f], bufI, {r, c, i, z.idx(f)});
      z.store(pc[2 + f], bufF, {r, c, i, z.idx(f)});
    }
  };
  // The join of entries [lo, hi) of boundary c's pieces in (bufI, bufF).
  auto joinParts = [&](OpBuilder &jb, Location jl, Value bufI, Value bufF,
                       Value r, Value c, Value lo, Value hi) {
    return emitForCarryingUnrolled(
        jb, jl, kUnrollScan, lo, hi, emitPieceInit(jb, jl),
        [&](OpBuilder &fb, Location fl, Value i, ValueRange acc) {
          return emitPieceJoin(fb, fl, acc,
                               loadPart(fb, fl, bufI, bufF, r, c, i));
        });
  };
  // A round, one kernel over (boundary c, chunk seg < c) of the boundaries
  // still searching: the chunk's piece at the boundary's next point; the
  // last of its group to finish joins the group, and the boundary's last
  // group joins the groups and steps. Every thread of a boundary reads its
  // state before arriving, and the step writes it after the last arrival.
  // Fences publish the pieces through the counters (emitDeviceFence).
  emitFor(
      b, loc, x.idx(0), x.idx(kSplitSearchSteps),
      [&](OpBuilder &sb, Location sl, Value) {
        emitParallelQueryBlocks(
            sb, sl, batch, heads, B{sb, sl}.mul(bounds, segs), kWideBlock,
            [&](OpBuilder &nb, Location nl, Value bi, Value h, Value item) {
              B y{nb, nl};
              Value r = emitRowIndex(nb, nl, bi, h);
              Value c = y.div(item, segs), seg = y.rem(item, segs);
              emitIf(nb, nl, y.lt(seg, c), [&](OpBuilder &pb, Location pl) {
                B z{pb, pl};
                Value searching =
                    z.eq(z.load(stateI, {r, c, z.idx(1)}), z.idx(0));
                emitIf(pb, pl, searching, [&](OpBuilder &qb, Location ql) {
                  B q{qb, ql};
                  Value at = q.load(stateF, {r, c, q.idx(4)});
                  storePart(qb, ql, partI, partF, r, c, seg,
                            emitSortedPiece(qb, ql, r, seg, at));
                  Value g = q.div(seg, q.idx(kJoinGroup));
                  Value lo = q.mul(g, q.idx(kJoinGroup));
                  Value hi = q.min(c, q.add(lo, q.idx(kJoinGroup)));
                  emitDeviceFence(qb, ql, LLVM::AtomicOrdering::release);
                  Value lastOfGroup = emitArriveLast(qb, ql, groupArrivals,
                                                     {r, c, g}, q.sub(hi, lo));
                  emitIf(qb, ql, lastOfGroup, [&](OpBuilder &gb, Location gl) {
                    B v{gb, gl};
                    emitDeviceFence(gb, gl, LLVM::AtomicOrdering::acquire);
                    storePart(gb, gl, groupI, groupF, r, c, g,
                              joinParts(gb, gl, partI, partF, r, c, lo, hi));
                    emitDeviceFence(gb, gl, LLVM::AtomicOrdering::release);
                    Value joined = v.ceilDiv(c, v.idx(kJoinGroup));
                    Value last =
                        emitArriveLast(gb, gl, boundArrivals, {r, c}, joined);
                    emitIf(gb, gl, last, [&](OpBuilder &tb, Location tl) {
                      emitDeviceFence(tb, tl, LLVM::AtomicOrdering::acquire);
                      SmallVector<Value> a = loadState(tb, tl, r, c);
                      SmallVector<Value> pc =
                          joinParts(tb, tl, groupI, groupF, r, c,
                                    B{tb, tl}.idx(0), joined);
                      storeState(tb, tl, r, c,
                                 emitSearchStep(tb, tl, k, a, pc));
                    });
                  });
                });
              });
            });
      });
  emitParallelQueryBlocks(
      b, loc, batch, heads, bounds, kChunkBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value c) {
        B y{nb, nl};
        Value r = emitRowIndex(nb, nl, bi, h);
        SmallVector<Value> a = loadState(nb, nl, r, c);
        SmallVector<Value> done = emitIfElse(
            nb, nl, a[6],
            [&](OpBuilder &, Location) { return SmallVector<Value>(a); },
            [&](OpBuilder &fb, Location fl) {
              return emitFinishSearch(fb, fl, r, c, a);
            });
        y.store(emitSearchResult(nb, nl, done), boundaryTau, {r, c});
      });
  for (Value v : {stateF, stateI, partI, partF, groupI, groupF, groupArrivals,
                  boundArrivals})
    memref::DeallocOp::create(b, loc, v);
}

// Step 4: per query, tau(t) and theta(t) from what steps 1-3 left, with no
// sequential walk (a walk keeps heaps whose every step is a chain of
// dependent memory reads: at P1 32k, 2 of 7 ms on an H100). Per chunk, the
// prefix scores whose class may change between the chunk's two boundary
// taus (the band) are gathered and the others only counted; per chunk
// entry, the number of prefix-list entries stronger than it; per chunk
// candidate, its class over the chunk's bracket (emitOwnCandidates). Then
// each query ranks its chunk's candidates up to its own (theta) and searches
// tau in its bracket over the band and its own band candidates (the step-3
// search, whose piece formula is the incremental solver's: both agree to
// rounding).
void ChunkedSelection::emitQueryThresholds(OpBuilder &b, Location loc) {
  B x{b, loc};
  Value rows = x.mul(batch, heads);
  Type index = b.getIndexType(), f64 = b.getF64Type();
  // The band of chunk c reads its prefix chunk by chunk (segment p is
  // chunk p < c), from the sorted scores.
  bandSegs = x.max(x.idx(1), chunks);
  bandCounts =
      allocScratch(b, loc, index, {rows, chunks, bandSegs, x.idx(kBandCounts)});
  bandSums = allocScratch(b, loc, f64, {rows, chunks, bandSegs});
  // Calls `body` for prefix chunk p of chunk c when the chunk has queries
  // whose tau is searched (a finite lower bound).
  auto forBandSegment =
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value item,
          function_ref<void(OpBuilder &, Location, Value r, Value c, Value p,
                            const BandRuns &)>
              body) {
        B y{nb, nl};
        Value r = emitRowIndex(nb, nl, bi, h);
        Value c = y.div(item, bandSegs), p = y.rem(item, bandSegs);
        Value live = y.andI(emitHasQueries(nb, nl, c), y.lt(p, c));
        emitIf(nb, nl, y.andI(live, emitHasBand(nb, nl, r, c)),
               [&](OpBuilder &sb, Location sl) {
                 body(sb, sl, r, c, p,
                      emitBandRuns(sb, sl, r, p, emitBandLimits(sb, sl, r, c)));
               });
      };
  // Per chunk entry (sorted order): the prefix list's entries stronger than
  // it, at most k of them (a binary search).
  emitParallelQueryBlocks(
      b, loc, batch, heads, x.mul(chunks, chunkLen), kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value item) {
        B y{nb, nl};
        Value r = emitRowIndex(nb, nl, bi, h);
        Value c = y.div(item, chunkLen), i = y.rem(item, chunkLen);
        Value live = y.andI(emitHasQueries(nb, nl, c),
                            y.lt(i, y.load(sortedLen, {r, c})));
        emitIf(nb, nl, live, [&](OpBuilder &wb, Location wl) {
          B w{wb, wl};
          Value above = emitIfElse(
              wb, wl, w.cmp(arith::CmpIPredicate::ugt, c, w.idx(0)),
              [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
                B t{tb, tl};
                Value prev = t.sub(c, t.idx(1));
                Value len = t.min(t.load(finalLen, {r, prev}), t.idx(k));
                return {emitCountStronger(tb, tl, finalScores, finalPos, r,
                                          prev, len,
                                          t.load(sortedScores, {r, c, i}),
                                          t.load(sortedPos, {r, c, i}))};
              },
              [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
                return {B{tb, tl}.idx(0)};
              })[0];
          w.store(above, sortedAbove, {r, c, i});
        });
      });
  // Per chunk: the lower bound of its searched queries' taus. Past k
  // candidates before it, its boundary tau; where the count passes k inside
  // it, z(k) - 1 at the first prefix of k + 1 candidates (z(k) only grows
  // with the prefix, and tau >= z(k) - 1), so that chunk's band is narrow
  // too; -inf where no query of it has more than k.
  emitParallelQueryBlocks(
      b, loc, batch, heads, chunks, kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value c) {
        emitIf(
            nb, nl, emitHasQueries(nb, nl, c), [&](OpBuilder &wb, Location wl) {
              B w{wb, wl};
              Value r = emitRowIndex(wb, wl, bi, h);
              Value len = emitPrefixListLen(wb, wl, r, c);
              Value lo = emitIfElse(
                  wb, wl, w.cmp(arith::CmpIPredicate::ugt, len, w.idx(k)),
                  [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
                    return {B{tb, tl}.load(boundaryTau, {r, c})};
                  },
                  [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
                    B t{tb, tl};
                    Value start = t.mul(c, chunkLen);
                    Value end = t.min(t.add(start, chunkLen), candidates);
                    Value need = t.sub(t.idx(k + 1), len);
                    // The position of the chunk's need-th candidate.
                    Value first = emitForCarryingUnrolled(
                        tb, tl, kUnrollScan, start, end,
                        ValueRange{t.idx(0), end},
                        [&](OpBuilder &fb, Location fl, Value i,
                            ValueRange a) -> SmallVector<Value> {
                          B v{fb, fl};
                          Value fin = emitIsCandidate(
                              fb, fl, emitScore(fb, fl, bi, h, i), false);
                          Value n = v.add(a[0], v.count(fin));
                          return {n,
                                  v.sel(v.andI(fin, v.eq(n, need)), i, a[1])};
                        })[1];
                    return emitIfElse(
                        tb, tl, t.lt(first, end),
                        [&](OpBuilder &sb, Location sl) -> SmallVector<Value> {
                          B v{sb, sl};
                          // `first` is the chunk's need-th candidate.
                          Value z =
                              emitChunkTheta(sb, sl, r, c, first, len, need)[0];
                          return {v.sub(v.toF64(z), v.f64(1.0))};
                        },
                        [&](OpBuilder &sb, Location sl) -> SmallVector<Value> {
                          return {B{sb, sl}.f64(-kInf)};
                        });
                  })[0];
              w.store(lo, chunkLo, {r, c});
            });
      });
  emitParallelQueryBlocks(
      b, loc, batch, heads, x.mul(chunks, bandSegs), kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value item) {
        forBandSegment(
            nb, nl, bi, h, item,
            [&](OpBuilder &sb, Location sl, Value r, Value c, Value p,
                const BandRuns &run) {
              B y{sb, sl};
              Value counts[kBandCounts] = {
                  run.n, y.sub(run.upperEnd, run.upperFixedEnd),
                  y.sub(run.aboveEnd, run.middleBandStart), run.upperFixedEnd,
                  y.sub(run.middleBandStart, run.upperEnd)};
              for (int i = 0; i < kBandCounts; ++i)
                y.store(counts[i], bandCounts, {r, c, p, y.idx(i)});
              // Only the unheaped MIDDLE scores are summed: the band's are
              // summed with the piece they fall in.
              Value sum = emitForCarryingUnrolled(
                  sb, sl, kUnrollScan, run.upperEnd, run.middleBandStart,
                  ValueRange{y.f64(0.0)},
                  [&](OpBuilder &fb, Location fl, Value i,
                      ValueRange a) -> SmallVector<Value> {
                    B v{fb, fl};
                    return {
                        v.add(a[0], v.toF64(v.load(sortedScores, {r, p, i})))};
                  })[0];
              y.store(sum, bandSums, {r, c, p});
            });
      });
  emitParallelQueryBlocks(
      b, loc, batch, heads, x.mul(chunks, bandSegs), kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value item) {
        forBandSegment(
            nb, nl, bi, h, item,
            [&](OpBuilder &sb, Location sl, Value r, Value c, Value p,
                const BandRuns &run) {
              B y{sb, sl};
              // Band entries of the chunks before this one go first.
              SmallVector<Value> at = emitForCarryingUnrolled(
                  sb, sl, kUnrollScan, y.idx(0), p,
                  ValueRange{y.idx(0), y.idx(0)},
                  [&](OpBuilder &fb, Location fl, Value i,
                      ValueRange a) -> SmallVector<Value> {
                    B v{fb, fl};
                    return {
                        v.add(a[0], v.load(bandCounts, {r, c, i, v.idx(1)})),
                        v.add(a[1], v.load(bandCounts, {r, c, i, v.idx(2)}))};
                  });
              Value rc = y.add(y.mul(r, chunks), c);
              auto copy = [&](Value from, Value to, Value band, Value base) {
                emitFor(sb, sl, from, to,
                        [&](OpBuilder &fb, Location fl, Value i) {
                          B v{fb, fl};
                          v.store(v.load(sortedScores, {r, p, i}), band,
                                  {rc, v.add(base, v.sub(i, from))});
                        });
              };
              copy(run.upperFixedEnd, run.upperEnd, bandUpper, at[0]);
              copy(run.middleBandStart, run.aboveEnd, bandMiddle, at[1]);
            });
      });
  // Per chunk: the candidates before it, its band's sizes, its unheaped
  // counts and MIDDLE sum (kSeed* order).
  emitParallelQueryBlocks(
      b, loc, batch, heads, chunks, kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value c) {
        Value r = emitRowIndex(nb, nl, bi, h);
        emitIf(
            nb, nl, emitHasQueries(nb, nl, c), [&](OpBuilder &wb, Location wl) {
              B w{wb, wl};
              Value len = emitPrefixListLen(wb, wl, r, c);
              SmallVector<Value> seed = emitIfElse(
                  wb, wl, emitHasBand(wb, wl, r, c),
                  [&](OpBuilder &sb, Location sl) -> SmallVector<Value> {
                    B v{sb, sl};
                    SmallVector<Value> init(kBandCounts, v.idx(0));
                    init.push_back(v.f64(0.0));
                    return emitForCarryingUnrolled(
                        sb, sl, kUnrollWide, v.idx(0), c, init,
                        [&](OpBuilder &fb, Location fl, Value p,
                            ValueRange a) -> SmallVector<Value> {
                          B u{fb, fl};
                          SmallVector<Value> next;
                          for (int i = 0; i < kBandCounts; ++i)
                            next.push_back(u.add(
                                a[i], u.load(bandCounts, {r, c, p, u.idx(i)})));
                          next.push_back(u.add(a[kBandCounts],
                                               u.load(bandSums, {r, c, p})));
                          return next;
                        });
                  },
                  [&](OpBuilder &sb, Location sl) -> SmallVector<Value> {
                    B v{sb, sl};
                    // No query of the chunk has more than k candidates.
                    return {len,      v.idx(0), v.idx(0),
                            v.idx(0), v.idx(0), v.f64(0.0)};
                  });
              for (int i = 0; i < kBandCounts; ++i)
                w.store(seed[i], seedCounts, {r, c, w.idx(i)});
              w.store(seed[kBandCounts], seedSums, {r, c});
            });
      });
  emitOwnCandidates(b, loc);
  // Per query: its last candidate j in [max(lag, 0), C).
  Value firstJ = x.max(lag, x.idx(0));
  emitParallelQueryBlocks(
      b, loc, batch, heads, x.max(x.idx(0), x.sub(candidates, firstJ)),
      kWideBlock, [&](OpBuilder &nb, Location nl, Value bi, Value h, Value i) {
        emitQueryThreshold(nb, nl, bi, h, B{nb, nl}.add(i, firstJ));
      });
  for (Value v : {bandCounts, bandSums, ownCounts, ownSums, ownBand})
    memref::DeallocOp::create(b, loc, v);
}

// Per chunk with queries, its candidates in segments of kOwnSegment (one
// thread each, in position order), classified as the band classifies the
// prefix scores: finite, staying UPPER or MIDDLE over the chunk's band
// limits (counted, MIDDLE summed), or in the band (packed for the queries'
// searches to classify at each point). Counts run from the segment's start,
// so a query adds up at most Lc / kOwnSegment of them.
void ChunkedSelection::emitOwnCandidates(OpBuilder &b, Location loc) {
  B x{b, loc};
  Value rows = x.mul(batch, heads);
  Type f64 = b.getF64Type();
  Value len = x.max(chunkLen, x.idx(1));
  // i32 counts: each is at most kOwnSegment.
  ownCounts = allocScratch(b, loc, b.getI32Type(),
                           {rows, chunks, len, x.idx(kOwnCounts)});
  ownSums = allocScratch(b, loc, f64, {rows, chunks, len});
  ownBand = allocScratch(b, loc, b.getF32Type(), {rows, chunks, len});
  Value segs = x.ceilDiv(len, x.idx(kOwnSegment));
  emitParallelQueryBlocks(
      b, loc, batch, heads, x.mul(chunks, segs), kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value item) {
        B y{nb, nl};
        Value c = y.div(item, segs), seg = y.rem(item, segs);
        emitIf(
            nb, nl, emitHasQueries(nb, nl, c), [&](OpBuilder &wb, Location wl) {
              B w{wb, wl};
              Value r = emitRowIndex(wb, wl, bi, h);
              Value start = w.mul(c, chunkLen);
              Value end = w.min(w.add(start, chunkLen), candidates);
              Value from = w.add(start, w.mul(seg, w.idx(kOwnSegment)));
              Value to = w.min(w.add(from, w.idx(kOwnSegment)), end);
              // Without a band no query of the chunk is searched: only the
              // finite count is read.
              Value hasBand = emitHasBand(wb, wl, r, c);
              BandLimits lim = emitBandLimits(wb, wl, r, c);
              SmallVector<Value> init(kOwnCounts, w.zero32());
              init.push_back(w.f64(0.0));
              emitForCarryingUnrolled(
                  wb, wl, kUnrollWide, from, to, init,
                  [&](OpBuilder &fb, Location fl, Value i,
                      ValueRange a) -> SmallVector<Value> {
                    B v{fb, fl};
                    Value z = emitScore(fb, fl, bi, h, i);
                    Value fin = emitIsCandidate(fb, fl, z, /*report=*/false);
                    Value zf = v.toF64(z);
                    auto gt = [&](Value p, Value q) {
                      return v.cmpf(arith::CmpFPredicate::OGT, p, q);
                    };
                    Value classed = v.andI(fin, hasBand);
                    Value above = v.andI(classed, gt(zf, lim.lo));
                    Value upperAtLo = v.andI(classed, gt(zf, lim.loPlusOne));
                    Value fixedUpper =
                        v.andI(upperAtLo, gt(v.sub(zf, v.f64(1.0)), lim.bound));
                    Value fixedMiddle = v.andI(v.andI(above, v.notI(upperAtLo)),
                                               gt(zf, lim.bound));
                    Value inBand =
                        v.andI(above, v.notI(v.orI(fixedUpper, fixedMiddle)));
                    Value at = v.sub(i, start);
                    emitIf(fb, fl, inBand, [&](OpBuilder &sb, Location sl) {
                      B u{sb, sl};
                      u.store(z, ownBand,
                              {r, c, u.add(u.sub(from, start), u.widen(a[3]))});
                    });
                    SmallVector<Value> next{
                        v.inc32(a[0], fin), v.inc32(a[1], fixedUpper),
                        v.inc32(a[2], fixedMiddle), v.inc32(a[3], inBand),
                        v.add(a[4], v.sel(fixedMiddle, zf, v.f64(0.0)))};
                    for (int n = 0; n < kOwnCounts; ++n)
                      v.store(next[n], ownCounts, {r, c, at, v.idx(n)});
                    v.store(next[kOwnCounts], ownSums, {r, c, at});
                    return next;
                  });
            });
      });
}

SmallVector<Value> ChunkedSelection::emitOwnTotals(OpBuilder &b, Location loc,
                                                   Value r, Value c,
                                                   Value start, Value j) const {
  B x{b, loc};
  Value at = x.sub(j, start);
  Value segSize = x.idx(kOwnSegment);
  auto countsAt = [&](OpBuilder &lb, Location ll, Value i) {
    B y{lb, ll};
    SmallVector<Value> v;
    for (int n = 0; n < kOwnCounts; ++n)
      v.push_back(y.widen(y.load(ownCounts, {r, c, i, y.idx(n)})));
    v.push_back(y.load(ownSums, {r, c, i}));
    return v;
  };
  SmallVector<Value> init = countsAt(b, loc, at);
  // The segments before j's: each one's counts at its last candidate.
  return emitForCarrying(b, loc, x.idx(0), x.div(at, segSize), init,
                         [&](OpBuilder &fb, Location fl, Value seg,
                             ValueRange a) -> SmallVector<Value> {
                           B y{fb, fl};
                           Value last = y.sub(
                               y.mul(y.add(seg, y.idx(1)), segSize), y.idx(1));
                           SmallVector<Value> v = countsAt(fb, fl, last);
                           for (auto [n, acc] : llvm::enumerate(a))
                             v[n] = y.add(acc, v[n]);
                           return v;
                         });
}

Value ChunkedSelection::emitPrefixListLen(OpBuilder &b, Location loc, Value r,
                                          Value c) const {
  B x{b, loc};
  return emitIfElse(
      b, loc, x.cmp(arith::CmpIPredicate::ugt, c, x.idx(0)),
      [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
        B t{tb, tl};
        return {t.load(finalLen, {r, t.sub(c, t.idx(1))})};
      },
      [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
        return {B{tb, tl}.idx(0)};
      })[0];
}

Value ChunkedSelection::emitHasQueries(OpBuilder &b, Location loc,
                                       Value c) const {
  B x{b, loc};
  Value start = x.mul(c, chunkLen);
  Value end = x.min(x.add(start, chunkLen), candidates);
  return x.lt(x.max(start, lag), end);
}

SmallVector<Value> ChunkedSelection::emitChunkTheta(OpBuilder &b, Location loc,
                                                    Value r, Value c, Value j,
                                                    Value before,
                                                    Value seen) const {
  // theta: the k-th strongest of the prefix list's top min(before, k) and
  // the chunk's candidates up to j. A chunk candidate's rank in that union
  // is its rank among the chunk's ones up to j (met in strength order) plus
  // its stored count of stronger list entries. Either one of them has rank
  // k - 1, or theta is the list entry that `stronger` of them precede.
  // Ranks only grow in strength order, so the pass stops at the first
  // entry ranked k or more: past the prefix list's k-th entry, usually
  // after a few of the chunk's strongest.
  B x{b, loc};
  Value zero = x.idx(0), one = x.idx(1), kIdx = x.idx(k);
  Value n = x.load(sortedLen, {r, c});
  Value negInf = emitF32(b, loc, -kInf);
  Value no = emitBool(b, loc, false);
  SmallVector<Value> init{zero, zero, zero, negInf, zero, no, no};
  SmallVector<Type> types(ValueRange(init).getTypes());
  auto loop = scf::WhileOp::create(
      b, loc, types, init,
      [&](OpBuilder &wb, Location wl, ValueRange a) {
        B y{wb, wl};
        scf::ConditionOp::create(wb, wl, y.andI(y.lt(a[0], n), y.notI(a[6])),
                                 a);
      },
      [&](OpBuilder &wb, Location wl, ValueRange a) {
        B y{wb, wl};
        Value i = a[0];
        Value p = y.load(sortedPos, {r, c, i});
        Value in = y.le(p, j);
        Value at = y.add(a[1], y.load(sortedAbove, {r, c, i}));
        Value hit = y.andI(in, y.eq(at, y.idx(k - 1)));
        Value stronger = y.andI(in, y.lt(at, y.idx(k - 1)));
        scf::YieldOp::create(
            wb, wl,
            ValueRange{y.add(i, y.idx(1)), y.add(a[1], y.count(in)),
                       y.add(a[2], y.count(stronger)),
                       y.sel(hit, y.load(sortedScores, {r, c, i}), a[3]),
                       y.sel(hit, p, a[4]), y.orI(a[5], hit),
                       y.cmp(arith::CmpIPredicate::uge, at, kIdx)});
      });
  // rank: stronger count, hit score and position, hit.
  SmallVector<Value> rank(loop.getResults().drop_front(2).take_front(4));
  Value full = x.le(kIdx, x.add(x.min(before, kIdx), seen));
  return emitIfElse(
      b, loc, x.andI(full, x.notI(rank[3])),
      [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
        B y{tb, tl};
        Value prev = y.sub(y.max(c, one), one);
        Value at = y.sub(y.idx(k - 1), rank[0]);
        return {y.load(finalScores, {r, prev, at}),
                y.load(finalPos, {r, prev, at})};
      },
      [&](OpBuilder &, Location) -> SmallVector<Value> {
        // A chunk candidate, or (-inf, 0) with fewer than k candidates:
        // all are selected.
        return {rank[1], rank[2]};
      });
}

Value ChunkedSelection::emitHasBand(OpBuilder &b, Location loc, Value r,
                                    Value c) const {
  B x{b, loc};
  return x.cmpf(arith::CmpFPredicate::OGT, x.load(chunkLo, {r, c}),
                x.f64(-kInf));
}

void ChunkedSelection::emitQueryThreshold(OpBuilder &b, Location loc, Value bi,
                                          Value h, Value j) const {
  B x{b, loc};
  Value r = emitRowIndex(b, loc, bi, h);
  Value c = x.div(j, chunkLen);
  Value start = x.mul(c, chunkLen);
  Value t = x.sub(j, lag);
  Value kIdx = x.idx(k);
  Value before = x.load(seedCounts, {r, c, x.idx(0)});
  SmallVector<Value> own = emitOwnTotals(b, loc, r, c, start, j);
  Value seen = own[0];
  SmallVector<Value> theta = emitChunkTheta(b, loc, r, c, j, before, seen);
  x.store(theta[0], thetaScore, {r, t});
  x.store(theta[1], thetaPos, {r, t});
  // tau: -inf with at most k candidates; otherwise the search from
  // [z(k) - 1, z(k)], narrowed to the chunk's boundary taus (tau only grows
  // with the prefix), over which the band and the counts describe f.
  Value searched = x.cmp(arith::CmpIPredicate::ugt, x.add(before, seen), kIdx);
  Value tau = emitIfElse(
      b, loc, searched,
      [&](OpBuilder &sb, Location sl) -> SmallVector<Value> {
        B y{sb, sl};
        BandLimits lim = emitBandLimits(sb, sl, r, c);
        Value zk = y.toF64(theta[0]);
        SmallVector<Value> init = emitSearchInit(sb, sl, k, zk);
        Value from = arith::MaximumFOp::create(sb, sl, init[0], lim.lo);
        init[0] = init[4] = init[7] = from;
        init[2] = arith::MinimumFOp::create(sb, sl, zk, lim.bound);
        // The band's sizes, then what keeps its class over the chunk's
        // bracket, prefix scores and own candidates alike.
        auto seedCount = [&](int i) {
          return y.load(seedCounts, {r, c, y.idx(i)});
        };
        SmallVector<Value> seed{seedCount(1), seedCount(2),
                                y.add(seedCount(3), own[1]),
                                y.add(seedCount(4), own[2]),
                                y.add(y.load(seedSums, {r, c}), own[4])};
        SmallVector<Type> types(ValueRange(init).getTypes());
        auto loop = scf::WhileOp::create(
            sb, sl, types, init,
            [&](OpBuilder &wb, Location wl, ValueRange a) {
              B v{wb, wl};
              Value more =
                  v.andI(v.notI(a[6]), v.lt(a[5], v.idx(kMaxSearchSteps)));
              scf::ConditionOp::create(wb, wl, more, a);
            },
            [&](OpBuilder &wb, Location wl, ValueRange a) {
              SmallVector<Value> pc =
                  emitQueryPiece(wb, wl, r, c, start, j, seed, a[4]);
              scf::YieldOp::create(wb, wl, emitSearchStep(wb, wl, k, a, pc));
            });
        return {emitSearchResult(sb, sl, loop.getResults())};
      },
      [&](OpBuilder &sb, Location sl) -> SmallVector<Value> {
        return {B{sb, sl}.f64(-kInf)};
      })[0];
  x.store(tau, queryTau, {r, t});
}

SmallVector<Value> ChunkedSelection::emitQueryPiece(OpBuilder &b, Location loc,
                                                    Value r, Value c,
                                                    Value start, Value j,
                                                    ValueRange seed,
                                                    Value at) const {
  // The fixed counts and MIDDLE sum hold for every point of the chunk's
  // bracket; the band's scores and the own candidates in it are classified
  // at `at`.
  B x{b, loc};
  Value atPlusOne = x.add(at, x.f64(1.0));
  auto classify = [&](OpBuilder &fb, Location fl, Value z,
                      ValueRange a) -> SmallVector<Value> {
    B y{fb, fl};
    Value zf = y.toF64(z);
    Value upper = y.cmpf(arith::CmpFPredicate::OGT, zf, atPlusOne);
    Value above = y.cmpf(arith::CmpFPredicate::OGT, zf, at);
    Value middle = y.andI(above, y.notI(upper));
    Value bp =
        y.sel(upper, y.sub(zf, y.f64(1.0)), y.sel(middle, zf, y.f64(kInf)));
    return {y.inc32(a[0], upper), y.inc32(a[1], middle),
            y.add(a[2], y.sel(middle, zf, y.f64(0.0))), y.minF(a[3], bp)};
  };
  // The loops count in i32 from 0 (B::inc32), added to the seed's counts
  // after them.
  Value rc = x.add(x.mul(r, chunks), c);
  SmallVector<Value> acc{x.zero32(), x.zero32(), seed[4], x.f64(kInf)};
  for (auto [band, size] :
       {std::pair(bandUpper, seed[0]), std::pair(bandMiddle, seed[1])})
    acc = emitForCarryingUnrolled(
        b, loc, kUnrollWide, x.idx(0), size, acc,
        [&, band = band](OpBuilder &fb, Location fl, Value i, ValueRange a) {
          return classify(fb, fl, B{fb, fl}.load(band, {rc, i}), a);
        });
  // The own candidates in the band, segment by segment: all of those of
  // the segments before j's, and those up to j of its own.
  Value off = x.sub(j, start);
  Value segSize = x.idx(kOwnSegment);
  Value lastSeg = x.div(off, segSize);
  acc = emitForCarrying(
      b, loc, x.idx(0), x.add(lastSeg, x.idx(1)), acc,
      [&](OpBuilder &sb, Location sl, Value seg,
          ValueRange a) -> SmallVector<Value> {
        B y{sb, sl};
        Value base = y.mul(seg, segSize);
        Value last =
            y.sel(y.lt(seg, lastSeg), y.add(base, y.idx(kOwnSegment - 1)), off);
        Value n =
            y.widen(y.load(ownCounts, {r, c, last, y.idx(kOwnCounts - 1)}));
        return emitForCarryingUnrolled(
            sb, sl, kUnrollWide, base, y.add(base, n), a,
            [&](OpBuilder &fb, Location fl, Value i, ValueRange a2) {
              return classify(fb, fl, B{fb, fl}.load(ownBand, {r, c, i}), a2);
            });
      });
  return {x.add(seed[2], x.widen(acc[0])), x.add(seed[3], x.widen(acc[1])),
          acc[2], acc[3]};
}

ChunkedSelection::BandLimits ChunkedSelection::emitBandLimits(OpBuilder &b,
                                                              Location loc,
                                                              Value r,
                                                              Value c) const {
  B x{b, loc};
  Value lo = x.load(chunkLo, {r, c});
  Value hi = x.load(boundaryTau, {r, x.add(c, x.idx(1))});
  // Rounding between the boundary search and a query's search must not let
  // tau pass a breakpoint the band does not hold.
  Value margin = x.mul(
      x.f64(1e-6), arith::MaximumFOp::create(b, loc, x.f64(1.0),
                                             math::AbsFOp::create(b, loc, hi)));
  return {lo, x.add(lo, x.f64(1.0)), x.add(hi, margin)};
}

ChunkedSelection::BandRuns
ChunkedSelection::emitBandRuns(OpBuilder &b, Location loc, Value r, Value p,
                               const BandLimits &lim) const {
  // Strongest first, every class is a run: above lo is [0, A), UPPER (above
  // lo + 1) [0, U); an UPPER score's breakpoint z - 1 and a MIDDLE one's z
  // pass the bound (the score keeps its class: only counted) on a prefix.
  B y{b, loc};
  Value n = y.load(sortedLen, {r, p});
  SmallVector<Value> counts = emitCountsAbove(b, loc, sortedScores, r, p, n,
                                              {{lim.lo, 0.0},
                                               {lim.loPlusOne, 0.0},
                                               {lim.bound, 1.0},
                                               {lim.bound, 0.0}});
  Value aboveEnd = counts[0], upperEnd = counts[1];
  Value upperFixedEnd = y.min(upperEnd, counts[2]);
  Value middleBandStart = y.max(upperEnd, y.min(aboveEnd, counts[3]));
  return {n, aboveEnd, upperEnd, upperFixedEnd, middleBandStart};
}

// Step 5: each chunk's first query's selection, ascending: its candidates
// (up to its last one) that reach its theta. The prefix is cut into segments
// of kListSegment candidates: one kernel counts each segment's members,
// the next writes them at the sum of the counts before their segment, so no
// thread walks more than one segment (nor the whole prefix).
void ChunkedSelection::emitFirstLists(OpBuilder &b, Location loc) {
  const FirstLists &firsts = firstLists;
  B x{b, loc};
  Value rows = x.mul(batch, heads);
  Value segLen = x.idx(kListSegment);
  Value segs = x.max(x.idx(1), x.ceilDiv(candidates, segLen));
  Value counts = allocScratch(b, loc, b.getIndexType(), {rows, chunks, segs});
  // Calls `body(from, to, ts, tp, q0)` for segment `seg` of chunk c's first
  // query's prefix when the chunk has queries (`firstLast` < its end).
  auto forSegment = [&](OpBuilder &nb, Location nl, Value bi, Value h,
                        Value item,
                        function_ref<void(
                            OpBuilder &, Location, Value r, Value c, Value seg,
                            Value from, Value to, Value ts, Value tp, Value q0)>
                            body) {
    B y{nb, nl};
    Value r = emitRowIndex(nb, nl, bi, h);
    Value c = y.div(item, segs), seg = y.rem(item, segs);
    Value start = y.mul(c, chunkLen);
    Value end = y.min(y.add(start, chunkLen), candidates);
    Value firstLast = y.max(start, lag);
    emitIf(nb, nl, y.lt(firstLast, end), [&](OpBuilder &qb, Location ql) {
      B q{qb, ql};
      Value q0 = q.sub(firstLast, lag);
      Value ts = q.load(thetaScore, {r, q0}), tp = q.load(thetaPos, {r, q0});
      Value last = q.add(firstLast, q.idx(1));
      Value from = q.min(q.mul(seg, segLen), last);
      Value to = q.min(q.add(from, segLen), last);
      body(qb, ql, r, c, seg, from, to, ts, tp, q0);
    });
  };
  // Visits the members of [from, to) in order, carrying a count.
  auto walk = [&](OpBuilder &fb, Location fl, Value bi, Value h, Value from,
                  Value to, Value ts, Value tp, Value init,
                  function_ref<void(OpBuilder &, Location, Value j, Value n)>
                      onMember) {
    // The segment's members are counted in i32 (at most kListSegment).
    B x{fb, fl};
    Value found = emitForCarryingUnrolled(
        fb, fl, kUnrollWide, from, to, ValueRange{x.zero32()},
        [&](OpBuilder &lb, Location ll, Value j,
            ValueRange carried) -> SmallVector<Value> {
          B y{lb, ll};
          Value z = emitScore(lb, ll, bi, h, j);
          Value take = y.andI(emitIsCandidate(lb, ll, z, false),
                              emitReaches(lb, ll, z, j, ts, tp));
          emitIf(lb, ll, take, [&](OpBuilder &mb, Location ml) {
            B m{mb, ml};
            onMember(mb, ml, j, m.add(init, m.widen(carried[0])));
          });
          return {y.inc32(carried[0], take)};
        })[0];
    return x.add(init, x.widen(found));
  };
  emitParallelQueryBlocks(
      b, loc, batch, heads, x.mul(chunks, segs), kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value item) {
        forSegment(nb, nl, bi, h, item,
                   [&](OpBuilder &sb, Location sl, Value r, Value c, Value seg,
                       Value from, Value to, Value ts, Value tp, Value) {
                     Value n =
                         walk(sb, sl, bi, h, from, to, ts, tp, B{sb, sl}.idx(0),
                              [](OpBuilder &, Location, Value, Value) {});
                     B{sb, sl}.store(n, counts, {r, c, seg});
                   });
      });
  emitParallelQueryBlocks(
      b, loc, batch, heads, x.mul(chunks, segs), kWideBlock,
      [&](OpBuilder &nb, Location nl, Value bi, Value h, Value item) {
        forSegment(nb, nl, bi, h, item,
                   [&](OpBuilder &sb, Location sl, Value r, Value c, Value seg,
                       Value from, Value to, Value ts, Value tp, Value q0) {
                     B y{sb, sl};
                     SmallVector<Value> lead =
                         firsts.lead(sb, sl, bi, h, c, q0);
                     auto at = [&](Value i) {
                       SmallVector<Value> l(lead);
                       l.push_back(i);
                       return l;
                     };
                     Value before = emitForCarryingUnrolled(
                         sb, sl, kUnrollScan, y.idx(0), seg,
                         ValueRange{y.idx(0)},
                         [&](OpBuilder &fb, Location fl, Value i,
                             ValueRange acc) -> SmallVector<Value> {
                           B f{fb, fl};
                           return {f.add(acc[0], f.load(counts, {r, c, i}))};
                         })[0];
                     Value end = walk(
                         sb, sl, bi, h, from, to, ts, tp, before,
                         [&](OpBuilder &mb, Location ml, Value j, Value n) {
                           storeIndexAs(mb, ml, j, firsts.buf, at(n));
                         });
                     // The last segment pads the list with -1.
                     emitIf(sb, sl, y.eq(seg, y.sub(segs, y.idx(1))),
                            [&](OpBuilder &pb, Location pl) {
                              Value pad = B{pb, pl}.idx(-1);
                              emitForCarryingUnrolled(
                                  pb, pl, kUnrollScan, end,
                                  firstListWidth(pb, pl), ValueRange{},
                                  [&](OpBuilder &fb, Location fl, Value i,
                                      ValueRange) {
                                    storeIndexAs(fb, fl, pad, firsts.buf,
                                                 at(i));
                                    return SmallVector<Value>{};
                                  });
                            });
                   });
      });
  memref::DeallocOp::create(b, loc, counts);
}

QueryPlace ChunkedSelection::emitPlace(OpBuilder &b, Location loc,
                                       Value t) const {
  B x{b, loc};
  Value last = x.add(t, lag);
  Value has = x.le(x.idx(0), last);
  Value safeLast = x.max(last, x.idx(0));
  Value chunk = x.div(safeLast, chunkLen);
  Value firstLast = x.max(x.mul(chunk, chunkLen), lag);
  return {has, safeLast, chunk, firstLast, x.sub(firstLast, lag)};
}

Value ChunkedSelection::emitTau(OpBuilder &b, Location loc, Value bi, Value h,
                                Value t) const {
  return B{b, loc}.load(queryTau, {emitRowIndex(b, loc, bi, h), t});
}

std::pair<Value, Value> ChunkedSelection::emitTheta(OpBuilder &b, Location loc,
                                                    Value bi, Value h,
                                                    Value t) const {
  B x{b, loc};
  Value r = emitRowIndex(b, loc, bi, h);
  return {x.load(thetaScore, {r, t}), x.load(thetaPos, {r, t})};
}

SmallVector<Value>
ChunkedSelection::emitVisitSelected(OpBuilder &b, Location loc, Value bi,
                                    Value h, Value t, const QueryPlace &place,
                                    ValueRange init, Visitor visit) const {
  return emitIfElse(
      b, loc, place.hasCandidates,
      [&](OpBuilder &nb, Location nl) -> SmallVector<Value> {
        B x{nb, nl};
        Value r = emitRowIndex(nb, nl, bi, h);
        Value ts = x.load(thetaScore, {r, t}), tp = x.load(thetaPos, {r, t});
        SmallVector<Value> lead =
            firstLists.lead(nb, nl, bi, h, place.chunk, place.firstQuery);
        lead.push_back(Value());
        auto offer = [&](OpBuilder &fb, Location fl, Value cond, Value p,
                         Value z, ValueRange carried) {
          B y{fb, fl};
          Value take = y.andI(cond, emitReaches(fb, fl, z, p, ts, tp));
          return emitIfElse(
              fb, fl, take,
              [&](OpBuilder &tb, Location tl) {
                return visit(tb, tl, p, z, carried);
              },
              [&](OpBuilder &, Location) {
                return SmallVector<Value>(carried);
              });
        };
        // The first query's list (padding is negative).
        SmallVector<Value> acc = emitForCarrying(
            nb, nl, x.idx(0), firstListWidth(nb, nl), init,
            [&](OpBuilder &fb, Location fl, Value i,
                ValueRange carried) -> SmallVector<Value> {
              B y{fb, fl};
              SmallVector<Value> at(lead);
              at.back() = i;
              Value p = emitLoadIndex(fb, fl, firstLists.buf, at);
              Value valid = y.le(y.idx(0), p);
              return emitIfElse(
                  fb, fl, valid,
                  [&](OpBuilder &vb, Location vl) -> SmallVector<Value> {
                    Value z = emitScore(vb, vl, bi, h, p);
                    return offer(vb, vl, emitBool(vb, vl, true), p, z, carried);
                  },
                  [&](OpBuilder &, Location) -> SmallVector<Value> {
                    return SmallVector<Value>(carried);
                  });
            });
        // Then the chunk's candidates after it, up to the query's last.
        return emitForCarrying(nb, nl, x.add(place.firstLast, x.idx(1)),
                               x.add(place.last, x.idx(1)), acc,
                               [&](OpBuilder &fb, Location fl, Value j,
                                   ValueRange carried) -> SmallVector<Value> {
                                 Value z = emitScore(fb, fl, bi, h, j);
                                 return offer(fb, fl,
                                              emitIsCandidate(fb, fl, z, false),
                                              j, z, carried);
                               });
      },
      [&](OpBuilder &, Location) -> SmallVector<Value> {
        return SmallVector<Value>(init);
      });
}

void sparsek::emitParallelScoreCheck(OpBuilder &b, Location loc,
                                     Operation *anchor, Value scores,
                                     Value from) {
  B x{b, loc};
  Value numKeys = emitDim(b, loc, scores, 2);
  Value count = x.max(x.idx(0), x.sub(numKeys, from));
  emitParallelQueryBlocks(
      b, loc, emitDim(b, loc, scores, 0), emitDim(b, loc, scores, 1), count,
      kWideBlock, [&](OpBuilder &nb, Location nl, Value bi, Value h, Value i) {
        B y{nb, nl};
        Value z = memref::LoadOp::create(nb, nl, scores,
                                         ValueRange{bi, h, y.add(from, i)});
        emitIsCandidateScore(nb, nl, anchor, z, /*inKernel=*/true);
      });
}
