//===- RowSelection.cpp - One-launch selection for short rows -------------===//
//
// One CTA of 32 warps per (batch, KV head) row (RowSelection.h):
//
// 1. The row's C candidate scores become rank keys (emitListRank: SPEC 4's
//    order as one signed i64, non-candidates lowest) in workgroup memory,
//    bitonic-sorted strongest first; then ranks[j] = sorted index of
//    position j (kNoRank for NaN, +-inf). NaN and +inf are reported here.
// 2. Queries t < first see at most k candidates (e(t) <= k, e(t) = the
//    number of positions t may select from): every candidate is selected.
//    The rest are cut into 32 runs of consecutive queries, one per warp.
//    Each query makes at most one more position visible, and tau(t) never
//    decreases (SPEC 3), so a warp carries tau's piece of f from one query
//    to the next: UPPER (a >= tau + 1) and MIDDLE (tau < a < tau + 1)
//    counts and the MIDDLE sum, with a = z - anchor (f64, anchored at
//    z(k) of the warp's first searched query, so sums cancel little), and
//    two indices pa <= pm into the sorted row that bound those classes.
//    Theta (the k-th visible entry) moves up by one visible entry when the
//    new entry ranks above it. tau then walks right over breakpoints until
//    the root of f(tau) = k lies on the current piece, or, in SPEC 3's
//    hard case (z(k) - z(k+1) >= 1, decided from the scores as the
//    reference does), to z(k) - 1. The warp's lanes run one control flow;
//    searches read 32 sorted entries at once (vote.ballot).
// 3. Per block list (every listQueries-th query t0): Sel(t0) is the
//    positions below e(t0) whose rank is at most theta(t0)'s, written in
//    ascending order by ballots and population counts.
//
// bench/selection_row_model.py is this algorithm on the CPU, checked
// against sparsek.reference; python/test/gpu checks the kernel's results.
//
//===----------------------------------------------------------------------===//
#include "RowSelection.h"

#include "KernelMath.h"
#include "TileLowerings.h"

#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "../SparseKToLoops/TopKHeap.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cstdint>
#include <limits>

using namespace mlir;
using namespace mlir::sparsek;

namespace {
constexpr int64_t kThreads = 1024;
constexpr int64_t kLanes = 32;
constexpr int64_t kWarps = kThreads / kLanes;
constexpr int64_t kCapacity = kRowSelectCandidates;
static_assert((kCapacity & (kCapacity - 1)) == 0, "bitonic sort size");
/// The i16 rank of a position that is not a candidate (NaN, +-inf): above
/// every sorted index, so no theta's rank reaches it.
constexpr int64_t kNoRank = 0x7fff;
static_assert(kCapacity < kNoRank, "ranks are i16");
/// Rank keys of finite scores are at least this (order key > INT32_MIN).
constexpr int64_t kMinFiniteKey = -(int64_t(0x7fffffff) << 32);
constexpr double kInf = std::numeric_limits<double>::infinity();

/// The kernel's shared values (defined at its top, so every region sees
/// them).
struct RowCtx {
  Value keys;       // memref<kCapacity x i64>: sorted rank keys
  Value ranks;      // memref<kCapacity x i16>: position -> index
  Value lane;       // index
  Value candidates; // C (index)
  int64_t k;
  /// The GPU kernel (lane `lane` of a warp of 32 that vote), or its CPU
  /// form: one thread that runs the warp's 32 lanes in turn wherever they
  /// differ (a vote evaluates every lane's predicate; `lane` is unused).
  bool gpu;
};

/// KernelMath plus the row's reads and the warp's votes.
struct RowMath : KernelMath {
  const RowCtx &r;

  RowMath(OpBuilder &b, Location loc, const RowCtx &r)
      : KernelMath{b, loc}, r(r) {}

  Value c64(int64_t v) {
    return arith::ConstantIntOp::create(b, loc, b.getI64Type(), v);
  }
  Value d(double v) {
    return arith::ConstantFloatOp::create(b, loc, b.getF64Type(), APFloat(v));
  }
  Value fdiv(Value x, Value y) { return arith::DivFOp::create(b, loc, x, y); }
  Value flt(Value x, Value y) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, y);
  }
  Value fle(Value x, Value y) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLE, x, y);
  }
  Value fge(Value x, Value y) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGE, x, y);
  }
  Value notI(Value x) {
    return arith::XOrIOp::create(b, loc, x, emitBool(b, loc, true));
  }
  /// i1: an i32 mask has a bit set.
  Value ne(Value mask) {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, mask,
                                 ci32(0));
  }
  Value toF64(Value indexValue) {
    Value i = arith::IndexCastOp::create(b, loc, b.getI64Type(), indexValue);
    return arith::SIToFPOp::create(b, loc, b.getF64Type(), i);
  }
  Value fromI32(Value x) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), x);
  }

  /// An index into the workgroup arrays, clamped (callers select away what
  /// an out-of-range index reads).
  Value clamp(Value i) { return min(max(i, c(0)), c(kCapacity - 1)); }
  Value key(Value i) {
    return memref::LoadOp::create(b, loc, r.keys, ValueRange{clamp(i)});
  }
  Value isFinite(Value key) {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, key,
                                 c64(kMinFiniteKey));
  }
  /// The position of a rank key (its low word is 0x7fffffff - j).
  Value pos(Value key) {
    Value low = arith::TruncIOp::create(b, loc, b.getI32Type(), key);
    return fromI32(arith::SubIOp::create(b, loc, ci32(0x7fffffff), low));
  }
  /// The f64 score of a finite rank key (its high word is the order key:
  /// the f32 bits with the sign-magnitude turned two's complement).
  Value score(Value key) {
    Value high = arith::TruncIOp::create(
        b, loc, b.getI32Type(), arith::ShRSIOp::create(b, loc, key, c64(32)));
    Value negative = lt(high, ci32(0));
    Value magnitude = arith::SubIOp::create(b, loc, ci32(0), high);
    Value bits =
        sel(negative,
            arith::OrIOp::create(b, loc, magnitude,
                                 ci32(std::numeric_limits<int32_t>::min())),
            high);
    Value f = arith::BitcastOp::create(b, loc, b.getF32Type(), bits);
    return arith::ExtFOp::create(b, loc, b.getF64Type(), f);
  }
  Value scoreAt(Value i) { return score(key(i)); }
  /// i1: sorted entry i is a candidate at a position below e.
  Value visible(Value i, Value e) {
    Value kk = key(i);
    Value in = andI(le(c(0), i), lt(i, r.candidates));
    return andI(andI(in, isFinite(kk)), lt(pos(kk), e));
  }
  /// The sorted index of position j (kNoRank: not a candidate).
  Value rankOf(Value j) {
    Value v = memref::LoadOp::create(b, loc, r.ranks, ValueRange{clamp(j)});
    return fromI32(arith::ExtSIOp::create(b, loc, b.getI32Type(), v));
  }

  using LaneFn = function_ref<Value(RowMath &, Value lane)>;

  /// The warp's vote on `pred(lane)`: bit l for lane l.
  Value ballot(LaneFn pred) {
    if (r.gpu)
      return NVVM::VoteSyncOp::create(b, loc, b.getI32Type(), ci32(-1),
                                      pred(*this, r.lane),
                                      NVVM::VoteSyncKind::ballot);
    return emitForCarrying(
        b, loc, c(0), c(kLanes), ValueRange{ci32(0)},
        [&](OpBuilder &lb, Location ll, Value lane,
            ValueRange m) -> SmallVector<Value> {
          RowMath y{lb, ll, r};
          Value bit =
              arith::ExtUIOp::create(lb, ll, lb.getI32Type(), pred(y, lane));
          Value shifted = arith::ShLIOp::create(lb, ll, bit, y.i32(lane));
          return {arith::OrIOp::create(lb, ll, m[0], shifted)};
        })[0];
  }
  /// This lane's share of an f64 that warpSum totals: on the GPU `f` of
  /// the lane, in the CPU form the sum over the lanes (warpSum is then the
  /// identity).
  Value laneShare(LaneFn f) {
    if (r.gpu)
      return f(*this, r.lane);
    return emitForCarrying(b, loc, c(0), c(kLanes), ValueRange{d(0.0)},
                           [&](OpBuilder &lb, Location ll, Value lane,
                               ValueRange a) -> SmallVector<Value> {
                             RowMath y{lb, ll, r};
                             return {y.fadd(a[0], f(y, lane))};
                           })[0];
  }
  /// `body` for this lane (GPU), or for every lane in order (CPU form).
  void eachLane(function_ref<void(RowMath &, Value lane)> body) {
    if (r.gpu)
      return body(*this, r.lane);
    emitFor(b, loc, c(0), c(kLanes),
            [&](OpBuilder &lb, Location ll, Value lane) {
              RowMath y{lb, ll, r};
              body(y, lane);
            });
  }
  Value popc(Value mask) {
    return fromI32(math::CtPopOp::create(b, loc, mask));
  }
  /// The lowest set bit's lane (32 for none).
  Value lowestLane(Value mask) {
    return fromI32(math::CountTrailingZerosOp::create(b, loc, mask));
  }
  /// Bits of the lanes below `lane`.
  Value lanesBelow(Value mask, Value lane) {
    Value below = arith::SubIOp::create(
        b, loc, arith::ShLIOp::create(b, loc, ci32(1), i32(lane)), ci32(1));
    return arith::AndIOp::create(b, loc, mask, below);
  }
  /// An f64 summed over the warp (two 32-bit shuffles per step).
  Value warpSum(Value x) {
    Type i64 = b.getI64Type(), i32 = b.getI32Type();
    for (int64_t off = 1; r.gpu && off < kLanes; off *= 2) {
      Value bits = arith::BitcastOp::create(b, loc, i64, x);
      Value lo = arith::TruncIOp::create(b, loc, i32, bits);
      Value hi = arith::TruncIOp::create(
          b, loc, i32, arith::ShRUIOp::create(b, loc, bits, c64(32)));
      Value lo2 = shuffleXor(lo, off);
      Value hi2 = shuffleXor(hi, off);
      Value other = arith::OrIOp::create(
          b, loc, arith::ExtUIOp::create(b, loc, i64, lo2),
          arith::ShLIOp::create(
              b, loc, arith::ExtUIOp::create(b, loc, i64, hi2), c64(32)));
      x = fadd(x, arith::BitcastOp::create(b, loc, b.getF64Type(), other));
    }
    return x;
  }
};

using CondFn = function_ref<Value(OpBuilder &, Location, ValueRange)>;
using BodyFn =
    function_ref<SmallVector<Value>(OpBuilder &, Location, ValueRange)>;

SmallVector<Value> emitWhile(OpBuilder &b, Location loc, ValueRange init,
                             CondFn cond, BodyFn body) {
  SmallVector<Type> types(init.getTypes());
  auto loop = scf::WhileOp::create(
      b, loc, types, init,
      [&](OpBuilder &cb, Location cl, ValueRange a) {
        scf::ConditionOp::create(cb, cl, cond(cb, cl, a), a);
      },
      [&](OpBuilder &wb, Location wl, ValueRange a) {
        scf::YieldOp::create(wb, wl, body(wb, wl, a));
      });
  return loop.getResults();
}

/// scf.for over [lb, ub) in steps of `step` carrying `init`.
SmallVector<Value> emitStepFor(
    OpBuilder &b, Location loc, Value lb, Value ub, int64_t step,
    ValueRange init,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)>
        body) {
  auto loop = scf::ForOp::create(
      b, loc, lb, ub, emitIndex(b, loc, step), init,
      [&](OpBuilder &fb, Location fl, Value i, ValueRange a) {
        scf::YieldOp::create(fb, fl, body(fb, fl, i, a));
      });
  return loop.getResults();
}

/// The warp's sweep state (all lanes alike).
enum Slot {
  kLive,   // visible candidates
  kTheta,  // sorted index of the k-th visible
  kPa,     // UPPER is the visible entries below pa
  kPm,     // MIDDLE the visible ones in [pa, pm)
  kUpper,  // their counts
  kMiddle, //
  kSum,    // f64: the MIDDLE a's sum
  kTau,    // f64: tau - anchor
  kAnchor, // f64
  kSlots
};

/// Warp-level searches and the sweep's steps over one row.
class RowWarp {
public:
  explicit RowWarp(const RowCtx &r) : r(r) {}

  /// The smallest index in [from, C) where `pred` holds (C for none).
  Value firstUp(OpBuilder &b, Location loc, Value from,
                function_ref<Value(RowMath &, Value)> pred) const {
    RowMath x{b, loc, r};
    SmallVector<Value> res = emitWhile(
        b, loc, ValueRange{from, x.c(-1)},
        [&](OpBuilder &cb, Location cl, ValueRange a) {
          RowMath y{cb, cl, r};
          return y.andI(y.lt(a[1], y.c(0)), y.lt(a[0], r.candidates));
        },
        [&](OpBuilder &wb, Location wl, ValueRange a) -> SmallVector<Value> {
          RowMath y{wb, wl, r};
          Value mask = y.ballot([&](RowMath &z, Value lane) {
            Value i = z.add(a[0], lane);
            return z.andI(z.lt(i, r.candidates), pred(z, i));
          });
          Value hit = y.ne(mask);
          return {y.add(a[0], y.c(kLanes)),
                  y.sel(hit, y.add(a[0], y.lowestLane(mask)), y.c(-1))};
        });
    return x.sel(x.lt(res[1], x.c(0)), r.candidates, res[1]);
  }

  /// The largest index in [stop, top) visible below e (-1 for none).
  Value lastDown(OpBuilder &b, Location loc, Value top, Value stop,
                 Value e) const {
    RowMath x{b, loc, r};
    return emitWhile(
        b, loc, ValueRange{top, x.c(-1)},
        [&](OpBuilder &cb, Location cl, ValueRange a) {
          RowMath y{cb, cl, r};
          return y.andI(y.lt(a[1], y.c(0)), y.lt(stop, a[0]));
        },
        [&](OpBuilder &wb, Location wl, ValueRange a) -> SmallVector<Value> {
          RowMath y{wb, wl, r};
          Value last = y.sub(a[0], y.c(1));
          Value mask = y.ballot([&](RowMath &z, Value lane) {
            Value j = z.sub(last, lane);
            return z.andI(z.le(stop, j), z.visible(j, e));
          });
          Value hit = y.ne(mask);
          return {y.sub(a[0], y.c(kLanes)),
                  y.sel(hit, y.sub(last, y.lowestLane(mask)), y.c(-1))};
        })[1];
  }

  /// The sorted index of the k-th entry visible below e (there are more
  /// than k).
  Value kthVisible(OpBuilder &b, Location loc, Value e) const {
    RowMath x{b, loc, r};
    return emitWhile(
        b, loc, ValueRange{x.c(0), x.c(0), x.c(-1)},
        [&](OpBuilder &cb, Location cl, ValueRange a) {
          RowMath y{cb, cl, r};
          return y.andI(y.lt(a[2], y.c(0)), y.lt(a[0], r.candidates));
        },
        [&](OpBuilder &wb, Location wl, ValueRange a) -> SmallVector<Value> {
          RowMath y{wb, wl, r};
          auto p = [&](RowMath &z, Value lane) {
            return z.visible(z.add(a[0], lane), e);
          };
          Value mask = y.ballot(p);
          Value need = y.sub(y.c(r.k - 1), a[1]);
          // The lane of the visible entry with `need` visible ones before it.
          Value at = y.ballot([&](RowMath &z, Value lane) {
            return z.andI(p(z, lane),
                          z.eq(z.popc(z.lanesBelow(mask, lane)), need));
          });
          return {y.add(a[0], y.c(kLanes)), y.add(a[1], y.popc(mask)),
                  y.sel(y.ne(at), y.add(a[0], y.lowestLane(at)), y.c(-1))};
        })[2];
  }

  /// The number of entries of [from, to) visible below e and the f64 sum
  /// of their score - anchor.
  std::pair<Value, Value> countSum(OpBuilder &b, Location loc, Value from,
                                   Value to, Value e, Value anchor) const {
    RowMath x{b, loc, r};
    SmallVector<Value> res = emitStepFor(
        b, loc, from, x.max(from, to), kLanes, ValueRange{x.c(0), x.d(0.0)},
        [&](OpBuilder &fb, Location fl, Value base,
            ValueRange a) -> SmallVector<Value> {
          RowMath y{fb, fl, r};
          auto p = [&](RowMath &z, Value lane) {
            Value i = z.add(base, lane);
            return z.andI(z.lt(i, to), z.visible(i, e));
          };
          Value share = y.laneShare([&](RowMath &z, Value lane) {
            Value a = z.fsub(z.scoreAt(z.add(base, lane)), anchor);
            return z.sel(p(z, lane), a, z.d(0.0));
          });
          return {y.add(a[0], y.popc(y.ballot(p))), y.fadd(a[1], share)};
        });
    return {res[0], x.warpSum(res[1])};
  }

  /// Positions below e that hold candidates.
  Value countLive(OpBuilder &b, Location loc, Value e) const {
    RowMath x{b, loc, r};
    return emitStepFor(b, loc, x.c(0), e, kLanes, ValueRange{x.c(0)},
                       [&](OpBuilder &fb, Location fl, Value base,
                           ValueRange a) -> SmallVector<Value> {
                         RowMath y{fb, fl, r};
                         Value mask = y.ballot([&](RowMath &z, Value lane) {
                           Value j = z.add(base, lane);
                           return z.andI(z.lt(j, e),
                                         z.lt(z.rankOf(j), z.c(kNoRank)));
                         });
                         return {y.add(a[0], y.popc(mask))};
                       })[0];
  }

  /// The state of the first query (visible below e) with more than k
  /// candidates: theta, the classes at tau = z(k) - 1, then the walk.
  SmallVector<Value> init(OpBuilder &b, Location loc, Value live,
                          Value e) const {
    RowMath x{b, loc, r};
    Value theta = kthVisible(b, loc, e);
    Value anchor = x.scoreAt(theta);
    // UPPER at tau = -1 (anchored): a >= 0, so every entry down to theta's
    // ties; MIDDLE: -1 < a < 0. Non-candidates sort last.
    Value pa = firstUp(b, loc, x.add(theta, x.c(1)), [&](RowMath &y, Value i) {
      Value kk = y.key(i);
      return y.orI(y.notI(y.isFinite(kk)), y.flt(y.score(kk), anchor));
    });
    Value pm = firstUp(b, loc, pa, [&](RowMath &y, Value i) {
      Value kk = y.key(i);
      return y.orI(y.notI(y.isFinite(kk)),
                   y.fle(y.fsub(y.score(kk), anchor), y.d(-1.0)));
    });
    Value upper = countSum(b, loc, x.c(0), pa, e, anchor).first;
    auto [middle, sum] = countSum(b, loc, pa, pm, e, anchor);
    SmallVector<Value> s(kSlots);
    s[kLive] = live;
    s[kTheta] = theta;
    s[kPa] = pa;
    s[kPm] = pm;
    s[kUpper] = upper;
    s[kMiddle] = middle;
    s[kSum] = sum;
    s[kTau] = x.d(-1.0);
    s[kAnchor] = anchor;
    return walk(b, loc, s, e);
  }

  /// The entry of sorted index `rank` became visible (e grew by one, the
  /// count of candidates was past k already): its class, theta, the walk.
  SmallVector<Value> add(OpBuilder &b, Location loc, ValueRange state,
                         Value rank, Value e) const {
    RowMath x{b, loc, r};
    SmallVector<Value> s(state);
    Value upper = x.lt(rank, s[kPa]);
    Value middle = x.andI(x.notI(upper), x.lt(rank, s[kPm]));
    s[kUpper] = x.sel(upper, x.add(s[kUpper], x.c(1)), s[kUpper]);
    s[kMiddle] = x.sel(middle, x.add(s[kMiddle], x.c(1)), s[kMiddle]);
    Value a = x.fsub(x.scoreAt(rank), s[kAnchor]);
    s[kSum] = x.sel(middle, x.fadd(s[kSum], a), s[kSum]);
    // One more visible entry above theta: the k-th is the one before it.
    s[kTheta] = emitIfElse(
        b, loc, x.lt(rank, s[kTheta]),
        [&](OpBuilder &tb, Location tl) -> SmallVector<Value> {
          return {lastDown(tb, tl, s[kTheta], RowMath{tb, tl, r}.c(0), e)};
        },
        [&](OpBuilder &, Location) -> SmallVector<Value> {
          return {s[kTheta]};
        })[0];
    return walk(b, loc, s, e);
  }

private:
  /// tau right across breakpoints until the root of f(tau) = k lies
  /// before the next one, or to the hard case's z(k) - 1.
  SmallVector<Value> walk(OpBuilder &b, Location loc, ValueRange state,
                          Value e) const {
    RowMath x{b, loc, r};
    Value anchor = state[kAnchor];
    Value theta = state[kTheta];
    Value next = firstUp(b, loc, x.add(theta, x.c(1)),
                         [&](RowMath &y, Value i) { return y.visible(i, e); });
    Value zk = x.scoreAt(theta);
    Value hard = x.orI(x.eq(next, r.candidates),
                       x.fge(x.fsub(zk, x.scoreAt(next)), x.d(1.0)));
    Value hardTau = x.fsub(x.fsub(zk, anchor), x.d(1.0));
    Value kF = x.d(static_cast<double>(r.k));
    SmallVector<Value> init{
        state[kPa],  state[kPm],  state[kUpper],          state[kMiddle],
        state[kSum], state[kTau], emitBool(b, loc, false)};
    SmallVector<Value> res = emitWhile(
        b, loc, init,
        [&](OpBuilder &cb, Location cl, ValueRange a) {
          return RowMath{cb, cl, r}.notI(a[6]);
        },
        [&](OpBuilder &wb, Location wl, ValueRange a) -> SmallVector<Value> {
          RowMath y{wb, wl, r};
          Value pa = a[0], pm = a[1], upper = a[2], middle = a[3], sum = a[4];
          // The smallest visible UPPER and MIDDLE entries: the next
          // breakpoints (UPPER -> MIDDLE at a - 1, MIDDLE -> below at a).
          Value ia = lastDown(wb, wl, pa, y.c(0), e);
          Value im = lastDown(wb, wl, pm, pa, e);
          Value hasA = y.le(y.c(0), ia), hasM = y.le(y.c(0), im);
          Value aA = y.fsub(y.scoreAt(ia), anchor);
          Value aM = y.fsub(y.scoreAt(im), anchor);
          Value ba = y.sel(hasA, y.fsub(aA, y.d(1.0)), y.d(kInf));
          Value bm = y.sel(hasM, aM, y.d(kInf));
          Value nb = arith::MinimumFOp::create(wb, wl, ba, bm);
          Value root =
              y.fdiv(y.fsub(y.fadd(y.toF64(upper), sum), kF), y.toF64(middle));
          Value hardDone = y.fge(nb, hardTau);
          Value softDone = y.andI(y.lt(y.c(0), middle), y.flt(root, nb));
          Value done = y.sel(hard, hardDone, softDone);
          Value tau = y.sel(hard, y.sel(hardDone, hardTau, nb),
                            y.sel(softDone, root, nb));
          // No breakpoint left: f is constant from here (never in a valid
          // state: some class holds the k-th entry); stop rather than spin.
          done = y.orI(done, y.notI(y.orI(hasA, hasM)));
          Value move = y.notI(done);
          Value toMiddle = y.andI(move, y.fle(ba, bm));
          Value toBelow = y.andI(move, y.notI(y.fle(ba, bm)));
          return {y.sel(toMiddle, ia, pa),
                  y.sel(toBelow, im, pm),
                  y.sel(toMiddle, y.sub(upper, y.c(1)), upper),
                  y.sel(toMiddle, y.add(middle, y.c(1)),
                        y.sel(toBelow, y.sub(middle, y.c(1)), middle)),
                  y.sel(toMiddle, y.fadd(sum, aA),
                        y.sel(toBelow, y.fsub(sum, aM), sum)),
                  tau,
                  done};
        });
    SmallVector<Value> s(state);
    s[kPa] = res[0];
    s[kPm] = res[1];
    s[kUpper] = res[2];
    s[kMiddle] = res[3];
    s[kSum] = res[4];
    s[kTau] = res[5];
    return s;
  }

  const RowCtx &r;
};

/// The kernel's operands.
struct RowArgs {
  Value scores, tau, thetaScore, thetaPos, lists, counts;
  DeviceStatus status;
  Value listQueries;

  SmallVector<Value> values() const {
    return {scores, tau,         thetaScore,    thetaPos,   lists,
            counts, status.word, status.mirror, listQueries};
  }
  static RowArgs from(ValueRange v) {
    return {v[0], v[1], v[2], v[3], v[4], v[5], {v[6], v[7]}, v[8]};
  }
};

/// e(t): how many candidate positions query t may select from.
Value emitVisibleEnd(KernelMath &x, Value t, Value lag, Value candidates) {
  return x.min(x.max(x.add(x.add(t, lag), x.c(1)), x.c(0)), candidates);
}

/// One row's selection: the kernel's body for thread `tid` of the CTA of
/// row `row`, or (null `tid`) its CPU form, the same steps run by one thread
/// for every warp in turn. `keys` and `ranks` are the row's scratch.
void emitRowBody(OpBuilder &b, Location loc, const RowArgs &a, Value keys,
                 Value ranks, Value row, Value tid, int64_t k, int64_t w) {
  KernelMath x{b, loc};
  bool gpu = static_cast<bool>(tid);
  int64_t threads = gpu ? kThreads : 1;
  Value start = gpu ? tid : x.c(0);
  Value heads = emitDim(b, loc, a.scores, 1);
  Value bi = x.div(row, heads), h = x.rem(row, heads);
  Value numKeys = emitDim(b, loc, a.scores, 2);
  Value numQueries = emitDim(b, loc, a.tau, 1);
  Value candidates = x.max(x.sub(numKeys, x.c(w)), x.c(0));
  Value lag = x.sub(x.sub(numKeys, numQueries), x.c(w));
  Value lane = gpu ? x.rem(tid, x.c(kLanes)) : x.c(0);
  RowCtx ctx{keys, ranks, lane, candidates, k, gpu};
  Type i64 = b.getI64Type(), i16 = b.getI16Type();
  auto barrier = [&](OpBuilder &bb, Location bl) {
    if (gpu)
      gpu::BarrierOp::create(bb, bl);
  };
  auto threadLoop = [&](Value ub,
                        function_ref<void(OpBuilder &, Location, Value)> body) {
    scf::ForOp::create(b, loc, start, ub, x.c(threads), ValueRange{},
                       [&](OpBuilder &fb, Location fl, Value i, ValueRange) {
                         body(fb, fl, i);
                         scf::YieldOp::create(fb, fl);
                       });
  };

  // 1. Keys, padded to a power of two with the lowest key, sorted.
  Value size = emitWhile(
      b, loc, ValueRange{x.c(2)},
      [&](OpBuilder &cb, Location cl, ValueRange s) {
        KernelMath y{cb, cl};
        return y.lt(s[0], candidates);
      },
      [&](OpBuilder &wb, Location wl, ValueRange s) -> SmallVector<Value> {
        KernelMath y{wb, wl};
        return {y.mul(s[0], y.c(2))};
      })[0];
  threadLoop(size, [&](OpBuilder &fb, Location fl, Value i) {
    KernelMath y{fb, fl};
    Value in = y.lt(i, candidates);
    Value u = memref::LoadOp::create(
        fb, fl, a.scores,
        ValueRange{bi, h, y.min(i, y.sub(candidates, y.c(1)))});
    // NaN and +inf are errors (then masked); -inf is a mask.
    Value belowInf =
        arith::CmpFOp::create(fb, fl, arith::CmpFPredicate::OLT, u, y.f(kInf));
    emitIf(fb, fl, y.andI(in, RowMath{fb, fl, ctx}.notI(belowInf)),
           [&](OpBuilder &eb, Location el) {
             emitDeviceStatus(eb, el, a.status, SPARSEK_ERROR_INVALID_SCORE);
           });
    Value lowest = arith::ConstantIntOp::create(
        fb, fl, i64, std::numeric_limits<int64_t>::min());
    Value key = y.sel(in, emitListRank(fb, fl, u, i), lowest);
    memref::StoreOp::create(fb, fl, key, ctx.keys, ValueRange{i});
  });
  barrier(b, loc);
  // Bitonic: runs of `span` sorted alternately, merged by strides; the
  // last span (the whole array) descending.
  emitWhile(
      b, loc, ValueRange{x.c(2)},
      [&](OpBuilder &cb, Location cl, ValueRange s) {
        KernelMath y{cb, cl};
        return y.le(s[0], size);
      },
      [&](OpBuilder &sb, Location sl, ValueRange s) -> SmallVector<Value> {
        KernelMath y{sb, sl};
        Value span = s[0];
        emitWhile(
            sb, sl, ValueRange{y.div(span, y.c(2))},
            [&](OpBuilder &cb, Location cl, ValueRange st) {
              KernelMath z{cb, cl};
              return z.lt(z.c(0), st[0]);
            },
            [&](OpBuilder &tb, Location tl,
                ValueRange st) -> SmallVector<Value> {
              KernelMath z{tb, tl};
              Value stride = st[0];
              scf::ForOp::create(
                  tb, tl, start, z.div(size, z.c(2)), z.c(threads),
                  ValueRange{},
                  [&](OpBuilder &fb, Location fl, Value p, ValueRange) {
                    KernelMath v{fb, fl};
                    Value lo = v.sub(v.mul(p, v.c(2)), v.rem(p, stride));
                    Value hi = v.add(lo, stride);
                    Value x0 = memref::LoadOp::create(fb, fl, ctx.keys,
                                                      ValueRange{lo});
                    Value x1 = memref::LoadOp::create(fb, fl, ctx.keys,
                                                      ValueRange{hi});
                    Value descending =
                        v.eq(arith::AndIOp::create(fb, fl, lo, span), v.c(0));
                    Value less = arith::CmpIOp::create(
                        fb, fl, arith::CmpIPredicate::slt, x0, x1);
                    Value more = arith::CmpIOp::create(
                        fb, fl, arith::CmpIPredicate::sgt, x0, x1);
                    Value swap = v.sel(descending, less, more);
                    memref::StoreOp::create(fb, fl, v.sel(swap, x1, x0),
                                            ctx.keys, ValueRange{lo});
                    memref::StoreOp::create(fb, fl, v.sel(swap, x0, x1),
                                            ctx.keys, ValueRange{hi});
                    scf::YieldOp::create(fb, fl);
                  });
              barrier(tb, tl);
              return {z.div(stride, z.c(2))};
            });
        return {y.mul(span, y.c(2))};
      });
  // Ranks by position.
  threadLoop(candidates, [&](OpBuilder &fb, Location fl, Value i) {
    RowMath y{fb, fl, ctx};
    Value kk = y.key(i);
    Value rank = y.sel(y.isFinite(kk), i, y.c(kNoRank));
    Value r16 = arith::TruncIOp::create(fb, fl, i16, y.i32(rank));
    memref::StoreOp::create(fb, fl, r16, ctx.ranks, ValueRange{y.pos(kk)});
  });
  barrier(b, loc);

  // 2. Thresholds. Queries that see at most k positions select them all.
  Value first = x.min(x.max(x.sub(x.c(k), lag), x.c(0)), numQueries);
  auto store = [&](OpBuilder &sb, Location sl, Value t, Value tau,
                   Value thetaScore, Value thetaPos) {
    memref::StoreOp::create(sb, sl, tau, a.tau, ValueRange{row, t});
    memref::StoreOp::create(sb, sl, thetaScore, a.thetaScore,
                            ValueRange{row, t});
    memref::StoreOp::create(sb, sl, thetaPos, a.thetaPos, ValueRange{row, t});
  };
  auto storeAll = [&](OpBuilder &sb, Location sl, Value t, Value e) {
    // (-inf, -inf, 0) selects every candidate; without one the query
    // tests none: (+inf, +inf, -1), as BlockKeySets writes.
    KernelMath y{sb, sl};
    Value has = y.lt(y.c(0), e);
    Value inf = y.f(kInf), negInf = y.negInf();
    Value v = y.sel(has, negInf, inf);
    store(sb, sl, t, v, v, y.sel(has, y.ci32(0), y.ci32(-1)));
  };
  threadLoop(first, [&](OpBuilder &fb, Location fl, Value t) {
    KernelMath y{fb, fl};
    storeAll(fb, fl, t, emitVisibleEnd(y, t, lag, candidates));
  });
  RowWarp sweep(ctx);
  Value per = x.ceilDiv(x.sub(numQueries, first), x.c(kWarps));
  // Warp `warp`'s run of queries.
  auto sweepRun = [&](OpBuilder &rb, Location rl, Value warp) {
    KernelMath x{rb, rl};
    Value from = x.min(x.add(first, x.mul(warp, per)), numQueries);
    Value to = x.min(x.add(from, per), numQueries);
    emitIf(rb, rl, x.lt(from, to), [&](OpBuilder &wb, Location wl) {
      RowMath y{wb, wl, ctx};
      Value e0 = emitVisibleEnd(y, from, lag, candidates);
      Value live0 = sweep.countLive(wb, wl, e0);
      SmallVector<Value> idle(kSlots, y.c(0));
      idle[kLive] = live0;
      idle[kSum] = idle[kTau] = idle[kAnchor] = y.d(0.0);
      SmallVector<Value> state0 = emitIfElse(
          wb, wl, y.lt(y.c(k), live0),
          [&](OpBuilder &ib, Location il) {
            return sweep.init(ib, il, live0, e0);
          },
          [&](OpBuilder &, Location) { return idle; });
      SmallVector<Value> carried{e0};
      carried.append(state0);
      emitStepFor(
          wb, wl, from, to, 1, carried,
          [&](OpBuilder &fb, Location fl, Value t,
              ValueRange c) -> SmallVector<Value> {
            RowMath z{fb, fl, ctx};
            Value e = emitVisibleEnd(z, t, lag, candidates);
            Value grown = z.lt(c[0], e);
            Value rank = z.rankOf(z.sub(e, z.c(1)));
            Value fresh = z.andI(grown, z.lt(rank, z.c(kNoRank)));
            SmallVector<Value> s(c.drop_front());
            s[kLive] = z.sel(fresh, z.add(s[kLive], z.c(1)), s[kLive]);
            Value crossed = z.andI(fresh, z.eq(s[kLive], z.c(k + 1)));
            Value added = z.andI(fresh, z.lt(z.c(k + 1), s[kLive]));
            s = emitIfElse(
                fb, fl, crossed,
                [&](OpBuilder &ib, Location il) {
                  return sweep.init(ib, il, s[kLive], e);
                },
                [&](OpBuilder &ib, Location il) {
                  return emitIfElse(
                      ib, il, added,
                      [&](OpBuilder &ab, Location al) {
                        return sweep.add(ab, al, s, rank, e);
                      },
                      [&](OpBuilder &, Location) { return s; });
                });
            Value searched = z.lt(z.c(k), s[kLive]);
            emitIf(fb, fl, z.andI(z.eq(lane, z.c(0)), searched),
                   [&](OpBuilder &tb, Location tl) {
                     RowMath q{tb, tl, ctx};
                     Type f32 = tb.getF32Type();
                     Value kk = q.key(s[kTheta]);
                     Value tau = arith::TruncFOp::create(
                         tb, tl, f32, q.fadd(s[kTau], s[kAnchor]));
                     Value ts =
                         arith::TruncFOp::create(tb, tl, f32, q.score(kk));
                     store(tb, tl, t, tau, ts, q.i32(q.pos(kk)));
                   });
            emitIf(fb, fl, z.andI(z.eq(lane, z.c(0)), z.notI(searched)),
                   [&](OpBuilder &tb, Location tl) { storeAll(tb, tl, t, e); });
            SmallVector<Value> next{e};
            next.append(s);
            return next;
          });
    });
  };
  Value warp = gpu ? x.div(tid, x.c(kLanes)) : Value();
  if (gpu)
    sweepRun(b, loc, warp);
  else
    emitFor(b, loc, x.c(0), x.c(kWarps), sweepRun);
  barrier(b, loc);

  // 3. Block lists: list l holds Sel(l * listQueries), one warp per list.
  Value numLists = emitDim(b, loc, a.counts, 1);
  scf::ForOp::create(
      b, loc, gpu ? warp : x.c(0), numLists, x.c(gpu ? kWarps : 1),
      ValueRange{}, [&](OpBuilder &lb, Location ll, Value l, ValueRange) {
        RowMath y{lb, ll, ctx};
        Value t0 = y.mul(l, a.listQueries);
        Value e0 = emitVisibleEnd(y, t0, lag, candidates);
        // Every candidate (tau = -inf), or those ranked up to theta(t0).
        Value tau0 = memref::LoadOp::create(lb, ll, a.tau, ValueRange{row, t0});
        Value thetaPos0 =
            emitLoadIndex(lb, ll, a.thetaPos, ValueRange{row, t0});
        Value all = y.isNegInf(tau0);
        Value limit =
            y.sel(all, y.c(kNoRank - 1), y.rankOf(y.max(thetaPos0, y.c(0))));
        Value count = emitStepFor(
            lb, ll, y.c(0), e0, kLanes, ValueRange{y.c(0)},
            [&](OpBuilder &fb, Location fl, Value base,
                ValueRange c) -> SmallVector<Value> {
              RowMath z{fb, fl, ctx};
              auto member = [&](RowMath &v, Value lane) {
                Value j = v.add(base, lane);
                return v.andI(v.lt(j, e0), v.le(v.rankOf(j), limit));
              };
              Value mask = z.ballot(member);
              // A member goes after the members of the lanes below it.
              z.eachLane([&](RowMath &v, Value lane) {
                emitIf(v.b, v.loc, member(v, lane),
                       [&](OpBuilder &mb, Location ml) {
                         RowMath u{mb, ml, ctx};
                         Value slot =
                             u.add(c[0], u.popc(u.lanesBelow(mask, lane)));
                         memref::StoreOp::create(
                             mb, ml, u.i32(u.add(base, lane)), a.lists,
                             ValueRange{row, l, slot});
                       });
              });
              return {z.add(c[0], z.popc(mask))};
            })[0];
        // Slots past the members: -1 (read by no tile, written so that no
        // read is uninitialized).
        emitStepFor(lb, ll, count, y.max(count, y.c(k)), kLanes, ValueRange{},
                    [&](OpBuilder &fb, Location fl, Value base,
                        ValueRange) -> SmallVector<Value> {
                      RowMath z{fb, fl, ctx};
                      z.eachLane([&](RowMath &v, Value lane) {
                        Value s = v.add(base, lane);
                        emitIf(v.b, v.loc, v.lt(s, v.c(k)),
                               [&](OpBuilder &pb, Location pl) {
                                 KernelMath u{pb, pl};
                                 memref::StoreOp::create(pb, pl, u.ci32(-1),
                                                         a.lists,
                                                         ValueRange{row, l, s});
                               });
                      });
                      return {};
                    });
        emitIf(lb, ll, y.eq(lane, y.c(0)), [&](OpBuilder &cb, Location cl) {
          memref::StoreOp::create(cb, cl, KernelMath{cb, cl}.i32(count),
                                  a.counts, ValueRange{row, l});
        });
        scf::YieldOp::create(lb, ll);
      });
}
} // namespace

void sparsek::emitRowSelection(OpBuilder &b, Location loc, ModuleOp gpuModule,
                               Operation *anchor, Value scores, int64_t k,
                               int64_t w, const ThresholdBuffers &thresholds,
                               Value lists, Value counts, Value listQueries) {
  KernelMath x{b, loc};
  MLIRContext *ctx = b.getContext();
  RowArgs args{scores,
               thresholds.tau,
               thresholds.thetaScore,
               thresholds.thetaPos,
               lists,
               counts,
               getDeviceStatus(b, loc, anchor),
               listQueries};
  Value rows = x.mul(emitDim(b, loc, scores, 0), emitDim(b, loc, scores, 1));
  Type i64 = b.getI64Type(), i16 = b.getI16Type();
  if (!gpuModule) {
    // The CPU form: one row after the other through the same scratch.
    Value keys =
        memref::AllocOp::create(b, loc, MemRefType::get({kCapacity}, i64));
    Value ranks =
        memref::AllocOp::create(b, loc, MemRefType::get({kCapacity}, i16));
    emitFor(b, loc, x.c(0), rows, [&](OpBuilder &fb, Location fl, Value row) {
      emitRowBody(fb, fl, args, keys, ranks, row, Value(), k, w);
    });
    memref::DeallocOp::create(b, loc, keys);
    memref::DeallocOp::create(b, loc, ranks);
    return;
  }
  auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  SmallVector<Type> workgroup{
      MemRefType::get({kCapacity}, i64, MemRefLayoutAttrInterface(), wg),
      MemRefType::get({kCapacity}, i16, MemRefLayoutAttrInterface(), wg)};
  Value one = x.c(1);
  emitKernelLaunch(
      b, loc, gpuModule, "sparsek_row_selection", args.values(), kThreads,
      workgroup, Value(), gpu::KernelDim3{rows, one, one},
      {rows, emitDim(b, loc, thresholds.tau, 1)},
      [&](OpBuilder &kb, Location kl, ValueRange kernelArgs,
          ValueRange wgBufs) {
        Value tid = gpu::ThreadIdOp::create(kb, kl, gpu::Dimension::x);
        Value row = gpu::BlockIdOp::create(kb, kl, gpu::Dimension::x);
        emitRowBody(kb, kl, RowArgs::from(kernelArgs), wgBufs[0], wgBufs[1],
                    row, tid, k, w);
      },
      "row_selection");
}
