//===- TileLowerings.h - The forms of the tile-first select_attention -*-
// C++ -*-===//
//
// All forms walk the same tiles (BlockKeySets.h): one tile per (batch, KV
// head, split of its query heads, query block), its key list in tiles of
// kKeyTile keys, an online softmax per row over those key tiles.
// - mma.sync (MmaSyncKernel.cpp): a gpu.func of 4 warps per tile, K/V rows
//   gathered into workgroup memory with cp.async, Q K^T and (P * gates) V on
//   tensor cores, the softmax in registers.
// - wgmma (WgmmaKernel.cpp, sm_90a): one warpgroup per 64 rows of a tile
//   (M = 64 or 128), K/V rows gathered with cp.async into 128B-swizzled
//   double buffers that the warpgroups share, Q K^T and (P * gates) V on
//   wgmma, the softmax in registers.
// - scalar (ScalarTiles.cpp): the same walk as plain loops, runnable on the
//   CPU, so the key sets, membership, gates and per-tile softmax are tested
//   against the reference where there is no GPU.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_TILELOWERINGS_H
#define SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_TILELOWERINGS_H

#include "BlockKeySets.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/PatternMatch.h"

#include "../SparseKToLoops/FusedChecks.h"

#include <optional>

namespace mlir::sparsek {

/// What both forms start from (host values, inside the checks' scf.if).
struct TileProblem {
  SelectAttentionOp op;
  FusedSizes sizes;
  TileGeometry geo;
  int64_t k, w;
  Value scale; // f32
  /// The block lists and thresholds (k >= 1 only).
  std::optional<BlockKeySets> keys;
};

/// Threads per 64 rows of a tile in both tensor-core forms: 4 warps
/// (mma.sync) or one warpgroup (wgmma).
constexpr int64_t kTileThreads = 128;

/// The kernel arguments of both tensor-core forms, in launch order.
struct TileKernelArgs {
  Value q, key, value, scores, out;
  Value lists, counts; // k >= 1
  ThresholdBuffers thresholds;
  Value scale;

  /// The host values the launch passes.
  static TileKernelArgs fromProblem(const TileProblem &p);
  /// The kernel's view of `values()` (its leading block arguments).
  static TileKernelArgs fromKernel(ValueRange v, bool selects);
  SmallVector<Value> values() const;
};

/// Device code: this block's (query block, head row) of a tile grid whose x
/// counts query blocks and y head rows (z: the batch), handed out heaviest
/// first. Blocks start in launch order (x fastest); the first y-size of them
/// take the last query block, whose causal key set is the longest, and so
/// on down, so the grid's last wave is made of the short early blocks
/// instead of full ones.
std::pair<Value, Value> emitHeavyFirstTile(OpBuilder &b, Location loc);

/// Builds a kernel gpu.func `kernelName` taking `args` into a new gpu.module
/// `<prefix>_<n>` of `module`, with `threads` threads and `workgroup`
/// attributions (16-byte aligned, as ldmatrix and cp.async need), fills its
/// body with `body` (given its arguments and attributions), and launches it
/// over `grid` with `dynamicSmem` bytes (null for none), skipped when one of
/// `sizes` is 0.
void emitKernelLaunch(OpBuilder &b, Location loc, ModuleOp module,
                      StringRef prefix, ValueRange args, int64_t threads,
                      TypeRange workgroup, Value dynamicSmem,
                      gpu::KernelDim3 grid, ArrayRef<Value> sizes,
                      function_ref<void(OpBuilder &, Location, ValueRange args,
                                        ValueRange workgroup)>
                          body,
                      StringRef kernelName = "tiles");

/// emitKernelLaunch of select_attention's tiles: builds a gpu.func `tiles` into
/// a new gpu.module `<prefix>_<n>` of `module` (its argument types are the
/// op's, so one module per op), with `threads` threads and `workgroup`
/// attributions (16-byte aligned, as ldmatrix and cp.async need), fills its
/// body with `body`, and launches it over (query blocks, Hkv x head splits, B)
/// with `dynamicSmem` bytes (null for none), skipped when the grid is empty.
void emitTileKernelLaunch(
    OpBuilder &b, Location loc, const TileProblem &p, ModuleOp module,
    StringRef prefix, int64_t threads, TypeRange workgroup, Value dynamicSmem,
    function_ref<void(OpBuilder &, Location, const TileKernelArgs &,
                      ValueRange workgroup)>
        body);

/// One (query, head) row of a tile in the scalar forms: its key list's
/// slots, read as the kernels read them.
struct ScalarRowSlots {
  Value q, key, scores, lists; // lists: null without selection
  int64_t k, w;
  Value d, scale; // index, f32
  Value bi, h, hq, t, r, listRow;
  QueryThresholds th;
  const BlockKeys &keys;

  /// (membership, gate, scaled score or -inf, clamped position) of slot i
  /// of a key tile of class `cls` (the wgmma kernel's shortcuts, checked
  /// against the reference through the scalar forms).
  std::tuple<Value, Value, Value, Value>
  slot(OpBuilder &b, Location loc, Value i, const KeyTileClass &cls) const;
};

/// The scalar forms' loops: over (batch, KV head, head split, query block)
/// the tile's key list, then `body(b, loc, row, numKeyTiles)` for each of
/// its valid rows. `sets`: the block lists and thresholds (k >= 1).
void emitScalarTileRows(
    OpBuilder &b, Location loc, const FusedSizes &z, const TileGeometry &geo,
    const std::optional<BlockKeySets> &sets, Value q, Value key, Value scores,
    int64_t k, int64_t w, Value scale,
    function_ref<void(OpBuilder &, Location, const ScalarRowSlots &, Value)>
        body);

/// Plain loops over the tiles (CPU-executable).
void emitScalarTiles(OpBuilder &b, Location loc, const TileProblem &p);

/// One gpu.launch_func of a gpu.func built into a new gpu.module of
/// `module`: grid (query blocks, Hkv x head splits, B), 128 threads.
void emitMmaSyncTiles(OpBuilder &b, Location loc, const TileProblem &p,
                      ModuleOp module);

/// The same tiles as one gpu.launch_func of a wgmma kernel (sm_90a only):
/// the same grid, one warpgroup per 64 rows of p.geo, dynamic workgroup
/// memory.
void emitWgmmaTiles(OpBuilder &b, Location loc, const TileProblem &p,
                    ModuleOp module);

/// What both forms of the tile-first select_attention_grad start from:
/// the forward's tiles, key lists and thresholds (TileSelectAttentionGrad.cpp
/// says what each form adds where).
struct GradTileProblem {
  SelectAttentionGradOp op;
  FusedSizes sizes;
  TileGeometry geo;
  int64_t k, w;
  Value scale; // f32
  std::optional<BlockKeySets> keys;
  /// [B, Hkv, T] f32, zeroed (k >= 1): per query, dg summed over its
  /// selected support and its query heads, added by the tiles.
  Value supportSums;
  /// dkey and dvalue added two columns per atomic (red.global.add.v2.f32).
  bool vectorAtomics = false;
};

/// The backward tiles as one gpu.launch_func of an mma.sync kernel (grid as
/// emitMmaSyncTiles, 32 threads per 16 rows, dynamic workgroup memory): dq
/// written, dkey, dvalue,
/// the score gradients' own terms and supportSums added atomically.
void emitMmaSyncGradTiles(OpBuilder &b, Location loc, const GradTileProblem &p,
                          ModuleOp module);

/// The same walk as plain loops (CPU-executable).
void emitScalarGradTiles(OpBuilder &b, Location loc, const GradTileProblem &p);

/// Lowers buffer-form `op` tile first (TileSelectAttentionGrad.cpp) on
/// tiles of `rows` (64 or 128) rows: the mma.sync kernel (with
/// `vectorAtomics`, dkey and dvalue added two columns per atomic), or with
/// `scalar` its walk as loops, in `module`.
void lowerSelectAttentionGradToTiles(RewriterBase &rewriter,
                                     SelectAttentionGradOp op, bool scalar,
                                     int64_t selectChunk, bool rowSelection,
                                     int64_t rows,
                                     bool vectorAtomics, ModuleOp module);

/// Why tile kernels cannot take operands `typed` (q, key, value, then those
/// of the same element type) and `others` (any element type): empty when
/// they can (bf16 or f16, identity layouts, static D and Dv in {64, 128}).
std::string tileOperandsUnsupportedReason(ArrayRef<Value> typed,
                                          ArrayRef<Value> others);

/// Why `op` cannot take the mma.sync form: as mmaSyncUnsupportedReason.
std::string mmaSyncGradUnsupportedReason(SelectAttentionGradOp op);

/// Why `op` cannot take the mma.sync or wgmma form (empty when it can): bf16 or
/// f16 q/key/value, static D and Dv in {64, 128}, identity layouts.
std::string mmaSyncUnsupportedReason(SelectAttentionOp op);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_TILELOWERINGS_H
