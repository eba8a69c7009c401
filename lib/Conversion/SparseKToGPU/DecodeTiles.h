//===- DecodeTiles.h - The split walk of the tile-first decode -*- C++ -*-===//
//
// sparsek-tile-decode-attention lowers decode_attention in two forms that
// walk the cache the same way:
// - kernel (DecodeTileKernel.cpp): one thread block of kDecodeWarps warps
//   per (sequence b, KV head h, split of the slots), one launch; CUDA cores
//   (math=simt) or tensor cores (math=mma, DecodeMmaWalk.cpp);
// - scalar (DecodeScalarTiles.cpp): the same walk as sequential loops, so a
//   CPU run checks it against the reference.
//
// The walk. Per (b, h) the valid slots are numbered v = 0 .. n - 1 with
// n = n_pool + n_win: v < n_pool is pool slot v, n_pool = pool_count; the
// rest are window ring slots k + (v - n_pool), n_win = min(pos + 1, w)
// (ring slot r holds a window position exactly when r <= pos: positions
// 0..pos fill slots 0..pos until the ring is full). A pool count outside
// [0, k] or a negative position is reported and makes n = 0
// (DecodeSplitRange).
// Split s of `splits` takes [lo, hi) = [s L, (s + 1) L) clamped to n, with
// L = ceil(n / splits). Inside it, lane `lane` of warp `warp` in iteration
// `it` reads chunk `c` of slot
//   lo + (it * kDecodeWarps + warp) * U + c * R + lane / C,
// with C = D / 8 lanes per row (16 bytes of bf16/f16 each), R = 32 / C rows
// per warp-wide load and U = chunksPerLane * R slots per warp and
// iteration. The lanes of one row (lane / C, "row class") keep one online
// softmax per query head over their slots; classes, then warps, then splits
// are merged as (max, sum, unnormalized output) states in log2 units (the
// scale and log2(e) folded into q, exp2 throughout).
// math=mma (DecodeMmaWalk.cpp) numbers the same slots with R = 1 and 16
// "chunks": warp `warp` takes slots lo + (it * kDecodeWarps + warp) * 16 +
// [0, 16) per iteration and keeps one softmax per head (one class).
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_DECODETILES_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_DECODETILES_H

#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

#include "mlir/IR/Builders.h"

#include <string>

namespace mlir {
class ModuleOp;
namespace sparsek {

constexpr int64_t kDecodeWarps = 4;
constexpr int64_t kDecodeThreads = kDecodeWarps * 32;
/// bf16/f16 elements in one 16-byte load.
constexpr int64_t kDecodeChunk = 8;
/// A split holds at least this many slots (two iterations of every warp at
/// D = 64): shorter ones spend more on merging than on reading (at B = 1,
/// D1 shape: 128 took 20.7 µs, 64 22.3 µs, 32 29.8 µs on an H100).
constexpr int64_t kDecodeMinSplitSlots = 128;
/// Query heads per KV head the kernel keeps in registers.
constexpr int64_t kDecodeMaxGroup = 8;

/// The lane layout of the walk for head dim d and group size g.
/// math=mma (DecodeMmaWalk.cpp) walks 16 slots per warp and iteration as
/// one class: R = 1, chunksPerLane = 16 (slot c of the warp's piece).
struct DecodeGeometry {
  int64_t lanesPerRow;   // C = D / 8
  int64_t rowsPerLoad;   // R = 32 / C (1 with mma)
  int64_t chunksPerLane; // K (and V) loads per lane and iteration
  int64_t slotsPerIter() const { return chunksPerLane * rowsPerLoad; }
  int64_t slotsPerBlockIter() const { return kDecodeWarps * slotsPerIter(); }

  static DecodeGeometry get(int64_t d, int64_t group, bool mma);
};

/// Why `op` cannot take the tile forms (empty when it can). Both need
/// identity layouts and static D = Dv in {64, 128}; the kernel also bf16 or
/// f16 q, key, value and output. G is checked where it is known.
std::string decodeTilesUnsupportedReason(DecodeAttentionOp op, bool kernel);

/// The operands of a decode_attention as values of the current scope (the
/// op's on the host, the kernel's arguments on the device).
struct DecodeOperands {
  Value q, key, value, scores, tau, count, positions, out;
};

/// Host: the split count (index) for B * Hkv (b, h) pairs over `slots`
/// slots: 1 when the pairs alone reach `targetBlocks`, else
/// ceil(targetBlocks / pairs), at most max(1, slots / kDecodeMinSplitSlots).
/// More than one split therefore means fewer than targetBlocks pairs.
Value emitDecodeSplits(OpBuilder &b, Location loc, Value pairs, int64_t slots,
                       int64_t targetBlocks);

/// What split `split` of (bi, h) reads (index values), and the check
/// points of the cache state and tau: the checks of the GPU loop form's
/// kernels (LowerDecodeAttention.cpp), on values the walk loads anyway. A
/// pool count outside [0, k] or a negative position (badState) leaves the
/// walk empty, so the (b, h) heads output zeros and no slot is read; a NaN
/// tau (badTau, only where the state is good) is reported and the walk goes
/// on with the gates it gives. The forms record both through the device
/// status (Status.h) with the loop form's codes.
struct DecodeSplitRange {
  Value poolCount; // n_pool
  Value lo, hi;    // virtual slots [lo, hi)
  Value badState;  // i1: INVALID_CACHE_STATE
  Value badTau;    // i1: INVALID_SCORE
  Value tau;       // f32 tau of (bi, h) for the gates; null when k = 0

  static DecodeSplitRange emit(OpBuilder &b, Location loc,
                               const DecodeOperands &ops, int64_t k, int64_t w,
                               Value bi, Value h, Value split, Value splits);
  /// The slot (index into k + w) of virtual slot v in [0, n).
  Value emitSlot(OpBuilder &b, Location loc, Value v, int64_t k) const;
};

/// Virtual slot of (iteration, warp, chunk c, row class).
Value emitWalkSlot(OpBuilder &b, Location loc, const DecodeGeometry &geo,
                   Value lo, Value it, Value warp, int64_t c, Value rowClass);

/// Iterations of the block loop over [lo, hi).
Value emitWalkIterations(OpBuilder &b, Location loc, const DecodeGeometry &geo,
                         Value lo, Value hi);

/// Slot `slot` (virtual `v`) of (bi, h): whether it counts (the window
/// always; a pool slot unless its score is NaN or +inf, the check point of
/// invalid scores: such a slot is skipped, as in the GPU loop form, and the
/// forms report INVALID_SCORE exactly where it does not count) and its f32
/// gate (clip(score - tau, 0, 1) in the pool as sparsek.select computes it,
/// 1 in the window). `tau` is f32 (emitClipGate: the gate of an f64 tau
/// equal to it).
std::pair<Value, Value> emitSlotGate(OpBuilder &b, Location loc,
                                     const DecodeOperands &ops, int64_t k,
                                     const DecodeSplitRange &range, Value v,
                                     Value bi, Value h, Value slot, Value tau);
/// The same from `score`, the slot's f32 score already loaded (the kernel
/// copies it ahead with the slot's K/V rows; unused where k = 0).
std::pair<Value, Value> emitSlotGateOf(OpBuilder &b, Location loc, int64_t k,
                                       const DecodeSplitRange &range, Value v,
                                       Value score, Value tau);

/// The weights of merging two softmax states with maxima m1, m2 (log2
/// units): (max, exp2(m1 - max), exp2(m2 - max)), with both weights 0 when
/// both states are empty (-inf), never NaN.
struct MergeWeights {
  Value max, first, second;
};
MergeWeights emitMergeWeights(OpBuilder &b, Location loc, Value m1, Value m2);

/// scale * log2(e) (f32): the factor folded into q.
Value emitLog2Scale(OpBuilder &b, Location loc, DecodeAttentionOp op,
                    int64_t d);

/// Declares in `symbols` (a module or gpu.module) a zero-initialized global
/// of `slots` i32 split counters, in `memorySpace`; returns its name.
StringRef declareSplitCounters(OpBuilder &b, Location loc, Operation *symbols,
                               StringRef base, int64_t slots,
                               Attribute memorySpace);

/// Layout of the split partials [pairs * splits, G, partialStride(Dv)]: the
/// unnormalized output, then max and sum. Each (row, head) is padded to
/// whole 128-byte lines: the merging block reads lines that other SMs wrote
/// in the same launch, and L1 is not coherent, so no line may be shared
/// with another pair's partials, which an earlier merge on the same SM may
/// have cached.
constexpr int64_t partialMaxIndex(int64_t dv) { return dv; }
constexpr int64_t partialSumIndex(int64_t dv) { return dv + 1; }
constexpr int64_t partialStride(int64_t dv) { return dv + 32; }

/// What both forms start from (host values, inside the checks' scf.if).
struct DecodeTileProblem {
  DecodeAttentionOp op;
  DecodeOperands ops; // the op's operands
  int64_t k, w, d;    // D = Dv
  Value batch, hkv;   // B, Hkv
  Value pairs;        // B * Hkv
  Value splits;       // emitDecodeSplits
  /// [pairs * splits, G, partialStride(D)] f32 (rows only when splits > 1).
  Value partials;
};

/// The kernel form: in `gpuModule` (which holds the split counters
/// `counters`), a gpu.func for group size `group`, launched on a grid
/// (splits, Hkv, B) of kDecodeThreads threads; `mma`: tensor cores
/// (DecodeMmaWalk.cpp), else CUDA cores.
void emitDecodeTileLaunch(OpBuilder &b, Location loc,
                          const DecodeTileProblem &p, Operation *gpuModule,
                          StringRef counters, int64_t group, bool mma);

/// The scalar form for group size `group` (a run-time value on the CPU),
/// walking as the kernel of that `mma` does; `counters` is a host global of
/// the module.
void emitDecodeScalarTiles(OpBuilder &b, Location loc,
                           const DecodeTileProblem &p, Value group,
                           StringRef counters, bool mma);

/// What one warp's walk of the kernel works on (device values).
struct DecodeWarpWalk {
  Type elem; // bf16 or f16
  int64_t k, d, group;
  DecodeOperands ops; // the kernel's arguments
  DecodeSplitRange range;
  Value bi, h, lane, warp;
  Value pairRow;   // row of slot 0 of (bi, h) in keyRows
  Value log2Scale; // f32
  /// key and value as [B * Hkv * (k + w), D], scores as [B * Hkv * (k + w)]
  /// (null where k = 0).
  Value keyRows, valueRows, scoreRows;
  /// Workgroup memory: warp states [warps, G, D], [warps, G] (max, sum), and
  /// the flags with the index of the invalid-score flag.
  Value sO, sM, sL, sFlag, badFlag;
  /// L2 prefetch issued by iteration `it` (rows further ahead).
  function_ref<void(OpBuilder &, Location, Value)> prefetch;
};

/// math=mma: the tensor-core walk of each warp over its slots
/// (DecodeMmaWalk.cpp); leaves the warp's per-head states in sO, sM, sL.
void emitDecodeMmaWalk(OpBuilder &b, Location loc, const DecodeWarpWalk &w);

} // namespace sparsek
} // namespace mlir

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_DECODETILES_H
