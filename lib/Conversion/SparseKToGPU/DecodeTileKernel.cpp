//===- DecodeTileKernel.cpp - decode_attention as one split-K launch ------===//
//
// The kernel form of the decode walk (DecodeTiles.h). One block of
// kDecodeWarps warps per (split, KV head h, sequence b):
//   - each lane holds the 8 elements [col, col + 8) of q for every query
//     head of h's group (f32, scaled by scale * log2(e)), col = 8 (lane % C);
//   - K and V stream through a per-warp cp.async ring in workgroup memory
//     (kDecodeStages stages; C lanes cover one row, so a warp's copy is R
//     whole rows, coalesced): per iteration each lane issues the
//     chunksPerLane 16-byte K and V chunks (and 4-byte scores) of the next
//     iteration, waits for this one's, and reads back only what it copied
//     (so no barrier), while lane 0 bulk-prefetches rows further ahead into
//     L2. The copies take raw addresses and the slot arithmetic is i32
//     (the loop is instruction-issue bound at large B). Then the partial
//     dot products of every (head, chunk), summed over the C lanes of the
//     row by one transposing butterfly (DK::rowSums), and per head the
//     online softmax update and the gated value accumulation (gates from
//     the slot scores and tau, in f32);
//   - the row classes of a warp merge with xor shuffles, the warps through
//     workgroup memory;
//   - one split: the block writes the output. Several: it writes its state
//     to the partials, then a gpu-scope fence and an atomic arrival on the
//     (b, h) counter; the last block to arrive merges all splits, loading
//     them in batches of kMergeBatch.
// Invalid cache states and scores go to the device status (two extra
// launch operands, Status.h) with the loop form's codes: thread 0 reports
// the block's cache state and tau, and each lane whether it skipped an
// invalid pool score (a predicate carried through the loop, reported after
// it), so the valid path only adds predicate logic on values it holds.
//
//===----------------------------------------------------------------------===//
#include "DecodeTiles.h"
#include "KernelMath.h"

#include "../SparseKToLoops/LoopUtils.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// Kernel builders: KernelMath plus the vector pieces of one lane's chunk.
struct DK : KernelMath {
  Type elem; // bf16 or f16
  DK(OpBuilder &b, Location loc, Type elem) : KernelMath{b, loc}, elem(elem) {}

  VectorType chunkF32() {
    return VectorType::get({kDecodeChunk}, b.getF32Type());
  }
  Value splat(Value x) {
    return vector::BroadcastOp::create(b, loc, chunkF32(), x);
  }
  /// 16-byte aligned load of 8 elements at `at`, widened to f32.
  Value loadChunk(Value buf, ValueRange at) {
    Value v = vector::LoadOp::create(
        b, loc, VectorType::get({kDecodeChunk}, elem), buf, at,
        /*nontemporal=*/false, llvm::MaybeAlign(16));
    return arith::ExtFOp::create(b, loc, chunkF32(), v);
  }
  /// A chain of fused multiply-adds: 8 FFMA per dot product, where a
  /// multiply and a reduction tree cost 8 FMUL and 7 FADD (per lane, chunk
  /// and head, the kernel's most frequent instructions).
  Value dot(Value x, Value y) {
    auto at = [&](Value v, int64_t i) {
      return vector::ExtractOp::create(b, loc, v, ArrayRef<int64_t>{i})
          .getResult();
    };
    Value acc = fmul(at(x, 0), at(y, 0));
    for (int64_t i = 1; i < kDecodeChunk; ++i)
      acc = math::FmaOp::create(b, loc, at(x, i), at(y, i), acc);
    return acc;
  }
  Value vfma(Value a, Value x, Value y) {
    return vector::FMAOp::create(b, loc, a, x, y);
  }
  Value vmul(Value x, Value y) { return arith::MulFOp::create(b, loc, x, y); }
  Value shuffleXorChunk(Value v, int64_t offset) {
    SmallVector<Value> e;
    for (int64_t i = 0; i < kDecodeChunk; ++i)
      e.push_back(shuffleXor(
          vector::ExtractOp::create(b, loc, v, ArrayRef<int64_t>{i}), offset));
    return vector::FromElementsOp::create(b, loc, chunkF32(), e);
  }
  void fence() { NVVM::MembarOp::create(b, loc, NVVM::MemScopeKind::GPU); }

  /// Each of `vals` summed over the `lanes` lanes of this lane's row (the
  /// lane-id bits [0, log2 lanes)), every sum in every lane. A transposing
  /// butterfly: each xor step halves the values a lane holds (it keeps one
  /// half and sends the other), so n values cost n - 1 shuffles and adds
  /// (plus two selects each) instead of n log2(lanes); then each sum is
  /// read from a lane that holds it (n indexed shuffles within the row).
  SmallVector<Value> rowSums(ArrayRef<Value> vals, Value lane, int64_t lanes) {
    int64_t n = llvm::PowerOf2Ceil(vals.size());
    SmallVector<Value> cur(vals);
    cur.resize(n, f(0.0)); // padding to a power of two
    Value lane32 = i32(lane);
    int64_t logLanes = llvm::Log2_64(lanes), logN = llvm::Log2_64(n);
    int64_t steps = std::min(logLanes, logN);
    for (int64_t st = 0; st < logLanes; ++st) {
      int64_t off = lanes >> (st + 1);
      if (st >= steps) { // one value left: a plain xor sum
        cur[0] = fadd(cur[0], shuffleXor(cur[0], off));
        continue;
      }
      // Lanes with this bit set keep the upper half.
      Value upper = arith::CmpIOp::create(
          b, loc, arith::CmpIPredicate::ne,
          arith::AndIOp::create(b, loc, lane32, ci32(off)), ci32(0));
      int64_t half = cur.size() / 2;
      SmallVector<Value> next;
      for (int64_t j = 0; j < half; ++j) {
        Value lo = cur[j], hi = cur[j + half];
        Value keep = sel(upper, hi, lo), send = sel(upper, lo, hi);
        next.push_back(fadd(keep, shuffleXor(send, off)));
      }
      cur = next;
    }
    // Value i sits in slot i % m of the row lane whose top `steps` bits are
    // i's top `steps` bits (the lanes below them hold the same sums).
    int64_t m = cur.size();
    // shfl.idx within segments of `lanes` lanes: the source lane keeps this
    // lane's bits above the row (c = segment mask << 8 | clamp).
    Value allLanes = ci32(-1);
    Value segment = ci32(((32 - lanes) << 8) | (lanes - 1));
    SmallVector<Value> sums;
    for (int64_t i = 0; i < static_cast<int64_t>(vals.size()); ++i) {
      int64_t owner = (i >> (logN - steps)) << (logLanes - steps);
      sums.push_back(NVVM::ShflOp::create(b, loc, b.getF32Type(), allLanes,
                                          cur[i % m], ci32(owner), segment,
                                          NVVM::ShflKind::idx,
                                          /*return_value_and_is_valid=*/nullptr)
                         .getResult());
    }
    return sums;
  }
};

/// sFlag[kBadScoreFlag]: some lane skipped an invalid pool score.
constexpr int64_t kBadScoreFlag = 1;

/// Stages of each warp's cp.async ring: the tile of the next iteration is
/// in flight while this one is computed. Two keep the block's workgroup
/// memory under 48 KiB (static, 4 blocks per SM at G <= 4, D = 128).
constexpr int64_t kDecodeStages = 2;

/// How many iterations beyond the ring each warp prefetches its rows into
/// L2 (bulk prefetches, no registers, no workgroup memory).
constexpr int64_t kPrefetchIters = 2;

/// Splits whose partials the merging block loads at once.
constexpr int64_t kMergeBatch = 8;

/// One query head's online softmax state (log2 units).
struct HeadState {
  Value m, l, o; // f32, f32, vector<8xf32>
};

/// The kernel's arguments, in launch order.
struct KernelArgs {
  DecodeOperands ops;
  Value partials, splits;
  DeviceStatus status; // word and mirror (sparsek-gpu-device-status)

  SmallVector<Value> values() const {
    return {ops.q,    ops.key,   ops.value,     ops.scores,
            ops.tau,  ops.count, ops.positions, ops.out,
            partials, splits,    status.word,   status.mirror};
  }
  static KernelArgs from(ValueRange v) {
    return {{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]},
            v[8],
            v[9],
            {v[10], v[11]}};
  }
};
} // namespace

/// Merges state `o` into `s` (the weights of DecodeTiles.h).
static HeadState merge(DK &x, const HeadState &s, const HeadState &o) {
  MergeWeights mw = emitMergeWeights(x.b, x.loc, s.m, o.m);
  Value l = x.fadd(x.fmul(s.l, mw.first), x.fmul(o.l, mw.second));
  Value acc = x.vfma(x.splat(mw.second), o.o, x.vmul(s.o, x.splat(mw.first)));
  return {mw.max, l, acc};
}

static void buildKernel(OpBuilder &b, Location loc, const KernelArgs &a,
                        ValueRange smem, DecodeAttentionOp op,
                        StringRef counterName, MemRefType counterType,
                        int64_t k, int64_t w, int64_t d, int64_t group,
                        bool mma) {
  Type elem = cast<MemRefType>(a.ops.q.getType()).getElementType();
  DK x{b, loc, elem};
  DecodeGeometry geo = DecodeGeometry::get(d, group, mma);
  int64_t lanes = geo.lanesPerRow, chunks = geo.chunksPerLane;
  Value sO = smem[0], sM = smem[1], sL = smem[2], sFlag = smem[3];
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value lane = x.rem(tid, x.c(32)), warp = x.div(tid, x.c(32));
  Value split = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value h = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  Value bi = gpu::BlockIdOp::create(b, loc, gpu::Dimension::z);
  Value kvHeads = emitDim(b, loc, a.ops.key, 1);
  Value r = x.add(x.mul(bi, kvHeads), h);
  DecodeSplitRange range =
      DecodeSplitRange::emit(b, loc, a.ops, k, w, bi, h, split, a.splits);
  // What this thread reports, as (i1, code) pairs: its block's cache state
  // and tau from thread 0 (every split of (b, h) reports, as every split
  // thread of the loop form does; first error wins), and the invalid pool
  // scores this lane skipped. Reported at the very end of the kernel: a
  // divergent compare-and-swap loop before the shuffles and barriers would
  // cost the valid path (ptxas then treats them as divergent).
  // One i32 (0 when valid) holds the block's code across the walk.
  Value leader = x.eq(tid, x.c(0));
  Value blockCode = x.sel(
      range.badState, x.ci32(SPARSEK_ERROR_INVALID_CACHE_STATE),
      x.sel(range.badTau, x.ci32(SPARSEK_ERROR_INVALID_SCORE), x.ci32(0)));

  Value pairRow = x.mul(r, x.c(k + w)); // slot 0 of (b, h)
  auto rows2d = [&](Value buf) {
    return memref::CollapseShapeOp::create(
               b, loc, buf, ArrayRef<ReassociationIndices>{{0, 1, 2}, {3}})
        .getResult();
  };
  // Rows [B * Hkv * (k + w), D]: one invariant row base per block, so a
  // dynamic head count adds no strides to the loop.
  Value keyRows = rows2d(a.ops.key), valueRows = rows2d(a.ops.value);
  Value scoreRows;
  if (k > 0)
    scoreRows = memref::CollapseShapeOp::create(
        b, loc, a.ops.scores, ArrayRef<ReassociationIndices>{{0, 1, 2}});

  // L2 prefetch, kPrefetchIters iterations ahead of each warp's loads:
  // lane 0 asks for the warp's future rows with one bulk prefetch per
  // contiguous piece (pool and window parts), which holds no register, so
  // enough bytes are in flight to hide DRAM latency whatever ptxas's
  // register budget lets the loads themselves overlap.
  int64_t rowBytes = d * elem.getIntOrFloatBitWidth() / 8;
  auto basePointer = [&](Value buf) {
    Value p = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, buf);
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), p).getResult();
  };
  Value keyBase = basePointer(a.ops.key), valueBase = basePointer(a.ops.value);
  // The walk's slot arithmetic in i32 (k + w < 2^30,
  // decodeTilesUnsupportedReason): index math costs 64-bit compares,
  // selects and adds per slot in a loop that is instruction-issue bound at
  // B = 64.
  Type i64 = b.getI64Type();
  auto wide = [&](OpBuilder &ob, Location ol, Value v) {
    return arith::IndexCastOp::create(ob, ol, i64, v).getResult();
  };
  Value hi32 = x.i32(range.hi), pool32 = x.i32(range.poolCount);
  // Virtual slot v >= n_pool is window slot k + (v - n_pool).
  Value windowShift = arith::SubIOp::create(b, loc, x.ci32(k), pool32);
  Value pairBytes = wide(b, loc, x.mul(pairRow, x.c(rowBytes)));
  Value warpSlot0 =
      x.i32(emitWalkSlot(b, loc, geo, range.lo, x.c(0), warp, 0, x.c(0)));
  auto prefetchRows = [&](OpBuilder &pb, Location pl, Value first,
                          Value count) {
    KernelMath z{pb, pl};
    emitIf(pb, pl, z.lt(z.ci32(0), count), [&](OpBuilder &ib, Location il) {
      KernelMath u{ib, il};
      Value offset = arith::AddIOp::create(
          ib, il, pairBytes,
          arith::MulIOp::create(
              ib, il, arith::ExtSIOp::create(ib, il, i64, first),
              arith::ConstantIntOp::create(ib, il, i64, rowBytes)));
      Value size = u.mul(count, u.ci32(rowBytes));
      auto global = LLVM::LLVMPointerType::get(ib.getContext(), 1);
      for (Value base : {keyBase, valueBase}) {
        Value addr = arith::AddIOp::create(ib, il, base, offset);
        Value ptr = LLVM::IntToPtrOp::create(ib, il, global, addr);
        NVVM::CpAsyncBulkPrefetchOp::create(ib, il, ptr, size, Value());
      }
    });
  };
  auto prefetchIteration = [&](OpBuilder &pb, Location pl, Value it) {
    KernelMath z{pb, pl};
    emitIf(pb, pl, z.eq(lane, z.c(0)), [&](OpBuilder &ib, Location il) {
      KernelMath u{ib, il};
      Value from = u.min(
          u.add(warpSlot0, u.mul(u.i32(it), u.ci32(geo.slotsPerBlockIter()))),
          hi32);
      Value to = u.min(u.add(from, u.ci32(geo.slotsPerIter())), hi32);
      Value poolFrom = u.min(from, pool32), poolTo = u.min(to, pool32);
      prefetchRows(ib, il, poolFrom, u.sub(poolTo, poolFrom));
      Value winFrom = u.max(from, pool32), winTo = u.max(to, pool32);
      prefetchRows(ib, il, u.add(winFrom, windowShift), u.sub(winTo, winFrom));
    });
  };
  // Iteration `it` prefetches what the walk reads kPrefetchIters
  // iterations after its own next ones (before the walk: 1..kPrefetchIters).
  auto prefetchAhead = [&](OpBuilder &pb, Location pl, Value it) {
    KernelMath z{pb, pl};
    prefetchIteration(pb, pl, z.add(it, z.c(1 + kPrefetchIters)));
  };
  // An invalid pool score met by any lane sets sFlag[1] (a predicated
  // workgroup store in the loop: a loop-carried flag would cost the valid
  // path registers), which thread 0 reports at the end.
  Value badFlag = x.c(kBadScoreFlag);
  if (k > 0) {
    emitIf(b, loc, leader, [&](OpBuilder &ib, Location il) {
      memref::StoreOp::create(ib, il, KernelMath{ib, il}.ci32(0), sFlag,
                              ValueRange{badFlag});
    });
    gpu::BarrierOp::create(b, loc);
  }

  if (mma) {
    DecodeWarpWalk walk{elem, k, d, group, a.ops, range, bi, h, lane, warp};
    walk.pairRow = pairRow;
    walk.log2Scale = emitLog2Scale(b, loc, op, d);
    walk.keyRows = keyRows;
    walk.valueRows = valueRows;
    walk.scoreRows = scoreRows;
    walk.sO = sO;
    walk.sM = sM;
    walk.sL = sL;
    walk.sFlag = sFlag;
    walk.badFlag = badFlag;
    walk.prefetch = prefetchAhead;
    for (int64_t i = 1; i <= kPrefetchIters; ++i)
      prefetchIteration(b, loc, x.c(i));
    emitDecodeMmaWalk(b, loc, walk);
  } else {
    Value col = x.mul(x.rem(lane, x.c(lanes)), x.c(kDecodeChunk));
    Value rowClass = x.div(lane, x.c(lanes));
    // Each warp's cp.async ring in workgroup memory: tile `it` (the
    // rows of iteration `it`, chunksPerLane K and V chunks and their scores per
    // lane) goes to stage it % kDecodeStages. A lane copies exactly the bytes
    // it reads back, so cp.async.wait_group alone orders them (no barrier),
    // and the stage it refills was last read by its own earlier loads. Slots
    // past hi are zero-filled (nothing read); their weights are 0 below.
    Value sK = smem[4], sV = smem[5], sS = smem[6];
    // The copies as cp.async on raw addresses: one wide multiply-add per
    // copy from invariant bases (memref addressing would redo the 64-bit
    // row arithmetic per chunk).
    DecodeSplitRange range32 = range;
    range32.poolCount = pool32;
    // Slot of (iteration 0, chunk 0) for this lane; iteration it adds
    // it * slotsPerBlockIter, chunk c adds c * R (emitWalkSlot).
    Value laneSlot0 = x.add(warpSlot0, x.i32(rowClass));
    Value slotLo = x.i32(range.emitSlot(b, loc, range.lo, k));
    int64_t elemBytes = elem.getIntOrFloatBitWidth() / 8;
    Value colBytes = x.mul(col, x.c(elemBytes));
    Value pairKey =
        arith::AddIOp::create(b, loc, pairBytes, wide(b, loc, colBytes));
    Value laneKey = arith::AddIOp::create(b, loc, keyBase, pairKey);
    Value laneValue = arith::AddIOp::create(b, loc, valueBase, pairKey);
    Value laneScore;
    if (k > 0)
      laneScore = arith::AddIOp::create(b, loc, basePointer(scoreRows),
                                        wide(b, loc, x.mul(pairRow, x.c(4))));
    // This lane's ring entries of stage 0 and chunk 0 (shared addresses).
    auto sharedBase = [&](Value ring, int64_t entryBytes) {
      Value p = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, ring);
      Value entry = x.add(x.mul(warp, x.c(chunks * 32)), lane);
      return wide(b, loc, x.add(p, x.mul(entry, x.c(entryBytes))));
    };
    int64_t chunkBytes = kDecodeChunk * elemBytes;
    Value sKLane = sharedBase(sK, chunkBytes),
          sVLane = sharedBase(sV, chunkBytes);
    Value sSLane = k > 0 ? sharedBase(sS, 4) : Value();
    auto issueTile = [&](OpBuilder &ib, Location il, Value it) {
      KernelMath y{ib, il};
      auto add64 = [&](Value p, Value q) {
        return arith::AddIOp::create(ib, il, p, q).getResult();
      };
      auto mul32 = [&](Value v, int64_t f) {
        return arith::MulIOp::create(ib, il, v, y.ci32(f)).getResult();
      };
      Value it32 = y.i32(it);
      Value stage = wide(ib, il, y.rem(it, y.c(kDecodeStages)));
      Value itSlot = arith::AddIOp::create(
          ib, il, laneSlot0, mul32(it32, geo.slotsPerBlockIter()));
      auto shared = LLVM::LLVMPointerType::get(ib.getContext(), 3);
      auto global = LLVM::LLVMPointerType::get(ib.getContext(), 1);
      auto copy = [&](Value sBase, int64_t entryBytes, int64_t c, Value gBase,
                      Value slot, int64_t gStride, Value inside) {
        // Stage-major ring [stages][warps][chunks][32 lanes].
        int64_t stageBytes = kDecodeWarps * chunks * 32 * entryBytes;
        Value dst = add64(
            sBase, arith::AddIOp::create(
                       ib, il,
                       arith::MulIOp::create(ib, il, stage,
                                             arith::ConstantIntOp::create(
                                                 ib, il, i64, stageBytes)),
                       arith::ConstantIntOp::create(ib, il, i64,
                                                    c * 32 * entryBytes)));
        // A 32 x 32 -> 64-bit multiply (the slot is below 2^30).
        Value src = add64(
            gBase, arith::MulIOp::create(
                       ib, il, arith::ExtSIOp::create(ib, il, i64, slot),
                       arith::ConstantIntOp::create(ib, il, i64, gStride)));
        int64_t n = entryBytes;
        NVVM::CpAsyncOp::create(
            ib, il, LLVM::IntToPtrOp::create(ib, il, shared, dst),
            LLVM::IntToPtrOp::create(ib, il, global, src),
            ib.getI32IntegerAttr(n),
            NVVM::LoadCacheModifierKindAttr::get(
                ib.getContext(), n == 16 ? NVVM::LoadCacheModifierKind::CG
                                         : NVVM::LoadCacheModifierKind::CA),
            y.sel(inside, y.ci32(n), y.ci32(0)));
      };
      for (int64_t c = 0; c < chunks; ++c) {
        Value v =
            arith::AddIOp::create(ib, il, itSlot, y.ci32(c * geo.rowsPerLoad));
        Value inside = y.lt(v, hi32);
        // Past the end: the address of slot lo (a row of (b, h)), no bytes.
        Value slot = y.sel(inside,
                           y.sel(y.lt(v, pool32), v,
                                 arith::AddIOp::create(ib, il, v, windowShift)),
                           slotLo);
        copy(sKLane, chunkBytes, c, laneKey, slot, rowBytes, inside);
        copy(sVLane, chunkBytes, c, laneValue, slot, rowBytes, inside);
        if (k > 0)
          copy(sSLane, 4, c, laneScore, slot, 4, inside);
      }
      NVVM::CpAsyncCommitGroupOp::create(ib, il);
    };

    Value iters = emitWalkIterations(b, loc, geo, range.lo, range.hi);
    // Tile 0 ahead of the loop (not where the walk is empty: n = 0 may mean
    // a cache without rows, whose base address is not one to copy from).
    emitIf(b, loc, x.lt(x.c(0), iters), [&](OpBuilder &ib, Location il) {
      issueTile(ib, il, KernelMath{ib, il}.c(0));
    });

    for (int64_t i = 1; i <= kPrefetchIters; ++i)
      prefetchIteration(b, loc, x.c(i));

    // q of the group's heads, in log2 units.
    Value qScale = x.splat(emitLog2Scale(b, loc, op, d));
    SmallVector<Value> qs;
    for (int64_t g = 0; g < group; ++g) {
      Value hq = x.add(x.mul(h, x.c(group)), x.c(g));
      qs.push_back(x.vmul(x.loadChunk(a.ops.q, {bi, hq, col}), qScale));
    }

    // Carried per head: m, l, o.
    SmallVector<Value> init;
    for (int64_t g = 0; g < group; ++g)
      init.append({x.negInf(), x.f(0.0), x.splat(x.f(0.0))});
    auto loop = scf::ForOp::create(
        b, loc, x.c(0), iters, x.c(1), init,
        [&](OpBuilder &lb, Location ll, Value it, ValueRange carried) {
          DK y{lb, ll, elem};
          Value next = y.add(it, y.c(1));
          prefetchAhead(lb, ll, it);
          // Tile it + 1 in flight (zero-filled past the walk), then tile it
          // landed: at most the newest group pending.
          issueTile(lb, ll, next);
          NVVM::CpAsyncWaitGroupOp::create(lb, ll, 1);
          Value stage = y.rem(it, y.c(kDecodeStages));
          auto chunkAt = [&](Value ring, int64_t c) {
            return y.loadChunk(ring, {stage, warp, y.c(c), lane, y.c(0)});
          };
          SmallVector<Value> valid, gate, kc;
          Value sawBad = emitBool(lb, ll, false);
          Value itSlot = arith::AddIOp::create(
              lb, ll, laneSlot0,
              arith::MulIOp::create(lb, ll, y.i32(it),
                                    y.ci32(geo.slotsPerBlockIter())));
          for (int64_t c = 0; c < chunks; ++c) {
            Value v = arith::AddIOp::create(lb, ll, itSlot,
                                            y.ci32(c * geo.rowsPerLoad));
            Value inside = y.lt(v, hi32);
            kc.push_back(chunkAt(sK, c));
            Value score;
            if (k > 0)
              score = memref::LoadOp::create(
                  lb, ll, sS, ValueRange{stage, warp, y.c(c), lane});
            auto [counts, g] =
                emitSlotGateOf(lb, ll, k, range32, v, score, range.tau);
            valid.push_back(y.andI(inside, counts));
            gate.push_back(g);
            // An invalid pool score among the slots this lane reads.
            if (k > 0)
              sawBad = arith::OrIOp::create(
                  lb, ll, sawBad,
                  arith::XOrIOp::create(lb, ll, inside, valid.back()));
          }
          SmallVector<Value> vc;
          for (int64_t c = 0; c < chunks; ++c)
            vc.push_back(chunkAt(sV, c));
          // The dot products of every (head, chunk), each summed over the
          // C lanes of its row.
          SmallVector<Value> parts;
          for (int64_t g = 0; g < group; ++g)
            for (int64_t c = 0; c < chunks; ++c)
              parts.push_back(y.dot(qs[g], kc[c]));
          SmallVector<Value> dots = y.rowSums(parts, lane, lanes);
          SmallVector<Value> nextState;
          for (int64_t g = 0; g < group; ++g) {
            SmallVector<Value> s;
            for (int64_t c = 0; c < chunks; ++c)
              s.push_back(y.sel(valid[c], dots[g * chunks + c], y.negInf()));
            Value m = carried[3 * g], l = carried[3 * g + 1],
                  o = carried[3 * g + 2];
            Value mNew = m;
            for (Value sc : s)
              mNew = y.fmax(mNew, sc);
            // No slot yet: exponents against 0 give exp2(-inf) = 0.
            Value mUse = y.sel(y.isNegInf(mNew), y.f(0.0), mNew);
            Value alpha = y.exp2Ftz(y.fsub(m, mUse));
            l = y.fmul(l, alpha);
            o = y.vmul(o, y.splat(alpha));
            for (int64_t c = 0; c < chunks; ++c) {
              Value p = y.exp2Ftz(y.fsub(s[c], mUse));
              l = y.fadd(l, p); // the sum leaves the gates out (SPEC 5)
              // Slots that do not count have p = 0 and zero-filled (or
              // finite cache) V rows, so 0 * V stays 0.
              o = y.vfma(y.splat(y.fmul(p, gate[c])), vc[c], o);
            }
            nextState.append({mNew, l, o});
          }
          if (k > 0)
            emitIf(lb, ll, sawBad, [&](OpBuilder &ib, Location il) {
              memref::StoreOp::create(ib, il, KernelMath{ib, il}.ci32(1), sFlag,
                                      ValueRange{badFlag});
            });
          scf::YieldOp::create(lb, ll, nextState);
        });
    // The zero-filled tile past the walk: no copy outlives the loop.
    NVVM::CpAsyncWaitGroupOp::create(b, loc, 0);

    // Row classes of a warp: xor shuffles over lanes C, 2C, ...
    SmallVector<HeadState> st;
    for (int64_t g = 0; g < group; ++g)
      st.push_back({loop.getResult(3 * g), loop.getResult(3 * g + 1),
                    loop.getResult(3 * g + 2)});
    for (int64_t off = lanes; off < 32; off *= 2)
      for (HeadState &s : st)
        s = merge(x, s,
                  {x.shuffleXor(s.m, off), x.shuffleXor(s.l, off),
                   x.shuffleXorChunk(s.o, off)});
    // Row class 0 holds the warp's state: to workgroup memory.
    emitIf(b, loc, x.eq(rowClass, x.c(0)), [&](OpBuilder &sb, Location sl) {
      for (int64_t g = 0; g < group; ++g) {
        vector::StoreOp::create(sb, sl, st[g].o, sO,
                                ValueRange{warp, emitIndex(sb, sl, g), col});
        memref::StoreOp::create(sb, sl, st[g].m, sM,
                                ValueRange{warp, emitIndex(sb, sl, g)});
        memref::StoreOp::create(sb, sl, st[g].l, sL,
                                ValueRange{warp, emitIndex(sb, sl, g)});
      }
    });
  }
  gpu::BarrierOp::create(b, loc);

  // Warps merged per (head, column): thread tid takes items tid + 128 i.
  Value one = x.c(1);
  Value multi = x.lt(one, a.splits);
  Value partRow = x.add(x.mul(r, a.splits), split);
  int64_t items = group * d;
  auto forItems =
      [&](OpBuilder &fb, Location fl,
          function_ref<void(OpBuilder &, Location, Value, Value)> body) {
        for (int64_t i = 0; i < (items + kDecodeThreads - 1) / kDecodeThreads;
             ++i) {
          KernelMath z{fb, fl};
          Value item = z.add(tid, z.c(kDecodeThreads * i));
          Value g = z.div(item, z.c(d)), e = z.rem(item, z.c(d));
          if ((i + 1) * kDecodeThreads <= items)
            body(fb, fl, g, e);
          else
            emitIf(fb, fl, z.lt(item, z.c(items)),
                   [&](OpBuilder &ib, Location il) { body(ib, il, g, e); });
        }
      };
  auto storeOut = [&](OpBuilder &sb, Location sl, Value g, Value e, Value o,
                      Value l) {
    KernelMath z{sb, sl};
    Value inv =
        z.sel(z.fgt(l, z.f(0.0)),
              arith::DivFOp::create(sb, sl, z.f(1.0), l).getResult(), z.f(0.0));
    Value hq = z.add(z.mul(h, z.c(group)), g);
    emitStoreF32(sb, sl, z.fmul(o, inv), a.ops.out, ValueRange{bi, hq, e});
  };
  forItems(b, loc, [&](OpBuilder &fb, Location fl, Value g, Value e) {
    KernelMath z{fb, fl};
    Value m = z.negInf();
    SmallVector<Value> ms, ls;
    for (int64_t wp = 0; wp < kDecodeWarps; ++wp) {
      ms.push_back(memref::LoadOp::create(fb, fl, sM, ValueRange{z.c(wp), g}));
      ls.push_back(memref::LoadOp::create(fb, fl, sL, ValueRange{z.c(wp), g}));
      m = z.fmax(m, ms.back());
    }
    Value mUse = z.sel(z.isNegInf(m), z.f(0.0), m);
    Value l = z.f(0.0), o = z.f(0.0);
    for (int64_t wp = 0; wp < kDecodeWarps; ++wp) {
      Value wgt = z.exp2Ftz(z.fsub(ms[wp], mUse));
      l = z.fadd(l, z.fmul(wgt, ls[wp]));
      Value ow = memref::LoadOp::create(fb, fl, sO, ValueRange{z.c(wp), g, e});
      o = z.fadd(o, z.fmul(wgt, ow));
    }
    auto ifOp = scf::IfOp::create(fb, fl, multi, /*withElse=*/true);
    {
      OpBuilder tb = ifOp.getThenBodyBuilder();
      memref::StoreOp::create(tb, fl, o, a.partials, ValueRange{partRow, g, e});
      emitIf(
          tb, fl, KernelMath{tb, fl}.eq(e, KernelMath{tb, fl}.c(0)),
          [&](OpBuilder &sb, Location sl) {
            memref::StoreOp::create(
                sb, sl, m, a.partials,
                ValueRange{partRow, g, emitIndex(sb, sl, partialMaxIndex(d))});
            memref::StoreOp::create(
                sb, sl, l, a.partials,
                ValueRange{partRow, g, emitIndex(sb, sl, partialSumIndex(d))});
          });
    }
    {
      OpBuilder eb = ifOp.getElseBodyBuilder();
      storeOut(eb, fl, g, e, o, l);
    }
  });

  // Several splits: the last block of (b, h) to arrive merges them.
  emitIf(b, loc, multi, [&](OpBuilder &mb, Location ml) {
    DK z{mb, ml, elem};
    z.fence(); // this block's partials are visible before its arrival
    gpu::BarrierOp::create(mb, ml);
    emitIf(mb, ml, z.eq(tid, z.c(0)), [&](OpBuilder &ab, Location al) {
      Value counters =
          memref::GetGlobalOp::create(ab, al, counterType, counterName);
      Value last = emitArriveLast(ab, al, counters, ValueRange{r}, a.splits);
      memref::StoreOp::create(
          ab, al, arith::ExtUIOp::create(ab, al, ab.getI32Type(), last), sFlag,
          ValueRange{emitIndex(ab, al, 0)});
    });
    gpu::BarrierOp::create(mb, ml);
    Value flag = memref::LoadOp::create(mb, ml, sFlag, ValueRange{z.c(0)});
    Value isLast = arith::CmpIOp::create(mb, ml, arith::CmpIPredicate::ne, flag,
                                         z.ci32(0));
    emitIf(mb, ml, isLast, [&](OpBuilder &lb, Location ll) {
      DK y{lb, ll, elem};
      y.fence(); // the other blocks' partials, after their arrivals
      Value first = y.mul(r, a.splits);
      Value last = y.add(first, a.splits);
      // Thread tid merges 4 consecutive columns of one head: one 16-byte
      // load of output and one 8-byte load of (max, sum) per split. The
      // splits go in batches of kMergeBatch whose loads are all issued
      // before their merge math (a batch costs one L2 round trip; a loop
      // that merges as it loads costs about one per 4 splits), the loads
      // past the last split clamped to it and their max taken as -inf
      // (weight 0).
      int64_t quads = group * d / 4;
      auto f32x = [&](int64_t n) {
        return VectorType::get({n}, lb.getF32Type());
      };
      for (int64_t i = 0; i < (quads + kDecodeThreads - 1) / kDecodeThreads;
           ++i) {
        auto body = [&](OpBuilder &fb, Location fl) {
          DK z{fb, fl, elem};
          Value col = z.mul(z.add(tid, z.c(kDecodeThreads * i)), z.c(4));
          Value g = z.div(col, z.c(d)), e = z.rem(col, z.c(d));
          Value zeros = vector::BroadcastOp::create(fb, fl, f32x(4), z.f(0.0));
          auto batches = scf::ForOp::create(
              fb, fl, first, last, z.c(kMergeBatch),
              ValueRange{z.negInf(), z.f(0.0), zeros},
              [&](OpBuilder &ib, Location il, Value row0, ValueRange acc) {
                KernelMath u{ib, il};
                auto lane = [&](Value v, int64_t k) {
                  return vector::ExtractOp::create(ib, il, v,
                                                   ArrayRef<int64_t>{k})
                      .getResult();
                };
                static_assert(partialSumIndex(0) == partialMaxIndex(0) + 1,
                              "max and sum are adjacent");
                SmallVector<Value> mls, pos, present;
                for (int64_t j = 0; j < kMergeBatch; ++j) {
                  Value row = u.add(row0, u.c(j));
                  Value in = u.lt(row, last);
                  Value at = u.sel(in, row, u.sub(last, u.c(1)));
                  mls.push_back(vector::LoadOp::create(
                      ib, il, f32x(2), a.partials,
                      ValueRange{at, g, u.c(partialMaxIndex(d))},
                      /*nontemporal=*/false, llvm::MaybeAlign(8)));
                  pos.push_back(vector::LoadOp::create(
                      ib, il, f32x(4), a.partials, ValueRange{at, g, e},
                      /*nontemporal=*/false, llvm::MaybeAlign(16)));
                  present.push_back(in);
                }
                auto splat4 = [&](Value x) {
                  return vector::BroadcastOp::create(ib, il, f32x(4), x)
                      .getResult();
                };
                Value m = acc[0], l = acc[1], o = acc[2];
                for (int64_t j = 0; j < kMergeBatch; ++j) {
                  Value mj = u.sel(present[j], lane(mls[j], 0), u.negInf());
                  MergeWeights mw = emitMergeWeights(ib, il, m, mj);
                  l = u.fadd(u.fmul(l, mw.first),
                             u.fmul(lane(mls[j], 1), mw.second));
                  o = vector::FMAOp::create(
                      ib, il, splat4(mw.second), pos[j],
                      arith::MulFOp::create(ib, il, o, splat4(mw.first)));
                  m = mw.max;
                }
                scf::YieldOp::create(ib, il, ValueRange{m, l, o});
              });
          SmallVector<Value> st(batches.getResults());
          Value inv =
              z.sel(z.fgt(st[1], z.f(0.0)),
                    arith::DivFOp::create(fb, fl, z.f(1.0), st[1]).getResult(),
                    z.f(0.0));
          Value o = arith::MulFOp::create(
              fb, fl, st[2], vector::BroadcastOp::create(fb, fl, f32x(4), inv));
          Value narrow =
              arith::TruncFOp::create(fb, fl, VectorType::get({4}, elem), o);
          Value hq = z.add(z.mul(h, z.c(group)), g);
          vector::StoreOp::create(fb, fl, narrow, a.ops.out,
                                  ValueRange{bi, hq, e},
                                  /*nontemporal=*/false, llvm::MaybeAlign(8));
        };
        if ((i + 1) * kDecodeThreads <= quads) {
          body(lb, ll);
        } else {
          KernelMath z{lb, ll};
          emitIf(lb, ll, z.lt(z.add(tid, z.c(kDecodeThreads * i)), z.c(quads)),
                 body);
        }
      }
    });
  });

  // Thread 0 reports the block's errors (all block-wide by now).
  emitIf(b, loc, leader, [&](OpBuilder &rb, Location rl) {
    KernelMath z{rb, rl};
    auto report = [&](Value bad, int32_t code) {
      emitIf(rb, rl, bad, [&](OpBuilder &ib, Location il) {
        emitDeviceStatus(ib, il, a.status, code);
      });
    };
    auto is = [&](int32_t code) {
      return arith::CmpIOp::create(rb, rl, arith::CmpIPredicate::eq, blockCode,
                                   z.ci32(code))
          .getResult();
    };
    report(is(SPARSEK_ERROR_INVALID_CACHE_STATE),
           SPARSEK_ERROR_INVALID_CACHE_STATE);
    Value badScore = is(SPARSEK_ERROR_INVALID_SCORE);
    if (k > 0) {
      // Last written in the loop, before the barriers since.
      Value f = memref::LoadOp::create(rb, rl, sFlag, ValueRange{badFlag});
      badScore = arith::OrIOp::create(
          rb, rl, badScore,
          arith::CmpIOp::create(rb, rl, arith::CmpIPredicate::ne, f,
                                z.ci32(0)));
    }
    report(badScore, SPARSEK_ERROR_INVALID_SCORE);
  });
}

void sparsek::emitDecodeTileLaunch(OpBuilder &b, Location loc,
                                   const DecodeTileProblem &p,
                                   Operation *gpuModule, StringRef counters,
                                   int64_t group, bool mma) {
  MLIRContext *ctx = b.getContext();
  KernelArgs host{p.ops, p.partials, p.splits, getDeviceStatus(b, loc, p.op)};
  SmallVector<Value> args = host.values();
  auto module = cast<gpu::GPUModuleOp>(gpuModule);
  auto counterGlobal =
      cast<memref::GlobalOp>(SymbolTable::lookupSymbolIn(module, counters));

  OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
  auto wg = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
  auto shared = [&](ArrayRef<int64_t> shape, Type t) {
    return MemRefType::get(shape, t, MemRefLayoutAttrInterface(), wg);
  };
  Type f32 = mb.getF32Type();
  Type elem = cast<MemRefType>(p.ops.q.getType()).getElementType();
  // The warps' states and the flags; with CUDA cores then the cp.async
  // rings of K, V and the scores (the loop of buildKernel).
  SmallVector<Type> smem{shared({kDecodeWarps, group, p.d}, f32),
                         shared({kDecodeWarps, group}, f32),
                         shared({kDecodeWarps, group}, f32),
                         shared({2}, mb.getI32Type())};
  if (!mma) {
    int64_t chunks = DecodeGeometry::get(p.d, group, mma).chunksPerLane;
    SmallVector<int64_t> ring{kDecodeStages, kDecodeWarps, chunks, 32};
    SmallVector<int64_t> ringChunks(ring);
    ringChunks.push_back(kDecodeChunk);
    smem.append({shared(ringChunks, elem), shared(ringChunks, elem),
                 shared(ring, f32)});
  }
  auto fn = gpu::GPUFuncOp::create(
      mb, loc, (mma ? "decode_mma_g" : "decode_g") + std::to_string(group),
      FunctionType::get(ctx, ValueRange(args).getTypes(), {}), smem,
      TypeRange{});
  fn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), mb.getUnitAttr());
  fn.setKnownBlockSizeAttr(DenseI32ArrayAttr::get(ctx, {kDecodeThreads, 1, 1}));
  // vector<8xf32> stores into the warp states, 16-byte cp.async and loads
  // of the K and V rings.
  for (unsigned i = 0; i < smem.size(); ++i)
    if (i == 0 || i == 4 || i == 5)
      fn.setWorkgroupAttributionAttr(i, "llvm.align", mb.getI64IntegerAttr(16));
  {
    OpBuilder kb = OpBuilder::atBlockBegin(&fn.getBody().front());
    buildKernel(kb, loc,
                KernelArgs::from(fn.getArguments().take_front(args.size())),
                fn.getWorkgroupAttributions(), p.op, counters,
                counterGlobal.getType(), p.k, p.w, p.d, group, mma);
    gpu::ReturnOp::create(kb, loc);
  }

  Value one = emitIndex(b, loc, 1);
  emitIfNonEmpty(b, loc, {p.hkv, p.batch}, [&](OpBuilder &lb, Location ll) {
    gpu::LaunchFuncOp::create(
        lb, ll, fn, gpu::KernelDim3{p.splits, p.hkv, p.batch},
        gpu::KernelDim3{emitIndex(lb, ll, kDecodeThreads), one, one}, Value(),
        args);
  });
}
