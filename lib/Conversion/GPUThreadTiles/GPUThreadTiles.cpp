//===- GPUThreadTiles.cpp - The sparsek-gpu-thread-tiles pass -------------===//
//
// Single-level scf.parallel loops (plain tensor code of a layer, lowered by
// convert-linalg-to-parallel-loops) get a nested thread-level loop, so that
// gpu-map-parallel-loops launches blocks of several threads instead of one
// thread per block. Upstream's scf-parallel-loop-tiling tiles every
// innermost parallel loop, which would re-tile the thread level of the
// sparsek lowerings' two-level nests; this pass touches only loops with no
// parallel loop inside or around them.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"

#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKGPUTHREADTILES
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;

/// Replaces `loop` by the nest (outer dims, innermost in steps of `threads`)
/// { (j) in [0, min(threads, ub - i)) } with the body at i + j. Only loops
/// with unit innermost step and no reductions (what linalg lowers to).
static bool tileInnermost(scf::ParallelOp loop, int64_t threads) {
  if (!loop.getInitVals().empty())
    return false;
  std::optional<int64_t> step = getConstantIntValue(loop.getStep().back());
  if (!step || *step != 1)
    return false;
  OpBuilder b(loop);
  Location loc = loop.getLoc();
  SmallVector<Value> steps(loop.getStep());
  steps.back() = arith::ConstantIndexOp::create(b, loc, threads);
  auto outer = scf::ParallelOp::create(b, loc, loop.getLowerBound(),
                                       loop.getUpperBound(), steps);
  b.setInsertionPointToStart(outer.getBody());
  Value start = outer.getInductionVars().back();
  AffineMap extent = AffineMap::get(
      2, 0, {b.getAffineConstantExpr(threads),
             b.getAffineDimExpr(0) - b.getAffineDimExpr(1)},
      b.getContext());
  Value bound = affine::AffineMinOp::create(
      b, loc, extent, ValueRange{loop.getUpperBound().back(), start});
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  auto inner = scf::ParallelOp::create(b, loc, ValueRange{zero},
                                       ValueRange{bound}, ValueRange{one});
  b.setInsertionPointToStart(inner.getBody());
  IRMapping map;
  SmallVector<Value> from = loop.getInductionVars(), to = outer.getInductionVars();
  for (size_t i = 0; i + 1 < from.size(); ++i)
    map.map(from[i], to[i]);
  map.map(from.back(),
          arith::AddIOp::create(b, loc, start, inner.getInductionVars()[0]));
  for (Operation &op : loop.getBody()->without_terminator())
    b.clone(op, map);
  loop.erase();
  return true;
}

namespace {
struct GPUThreadTiles
    : public sparsek::impl::SparseKGPUThreadTilesBase<GPUThreadTiles> {
  using Base::Base;

  void runOnOperation() override {
    if (threads < 1 || threads > 1024) {
      getOperation().emitError("sparsek-gpu-thread-tiles: threads must be in "
                               "[1, 1024] (a block's thread limit), got ")
          << static_cast<int64_t>(threads);
      return signalPassFailure();
    }
    SmallVector<scf::ParallelOp> flat;
    getOperation().walk([&](scf::ParallelOp loop) {
      if (loop->getParentOfType<scf::ParallelOp>())
        return;
      bool nested = false;
      loop.getBody()->walk([&](scf::ParallelOp) { nested = true; });
      if (!nested)
        flat.push_back(loop);
    });
    for (scf::ParallelOp loop : flat)
      tileInnermost(loop, threads);
  }
};
} // namespace
