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

/// Builds a gpu.func `tiles` into a new gpu.module `<prefix>_<n>` of
/// `module` (its argument types are the op's, so one module per op),
/// with `threads` threads and `workgroup` attributions (16-byte aligned, as
/// ldmatrix and cp.async need), fills its body with `body`, and launches it
/// over (query blocks, Hkv x head splits, B) with `dynamicSmem` bytes (null
/// for none), skipped when the grid is empty.
void emitTileKernelLaunch(
    OpBuilder &b, Location loc, const TileProblem &p, ModuleOp module,
    StringRef prefix, int64_t threads, TypeRange workgroup, Value dynamicSmem,
    function_ref<void(OpBuilder &, Location, const TileKernelArgs &,
                      ValueRange workgroup)>
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

/// Why `op` cannot take the mma.sync or wgmma form (empty when it can): bf16 or
/// f16 q/key/value, static D and Dv in {64, 128}, identity layouts.
std::string mmaSyncUnsupportedReason(SelectAttentionOp op);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_SPARSEKTOGPU_TILELOWERINGS_H
