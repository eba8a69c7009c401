//===- GPUScratchArena.cpp - The sparsek-gpu-scratch-arena pass -----------===//
//
// One device allocation per block for the buffers sparsek-gpu-host-allocs
// moved to the GPU. Each gpu.alloc / gpu.dealloc is a host driver call (a
// stream-ordered pool allocation through mgpuMemAlloc); the fused
// select_attention makes about forty of each per call, most of them between
// its first two launches, where the GPU waits for them. One checked
// allocation replaces them, and a failed one is reported instead of
// handing kernels a null pointer.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/CheckAllocations/CheckAllocations.h"
#include "sparsek/Conversion/GPUHostAllocs/GPUHostAllocs.h"
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/IR/Dominance.h"
#include "mlir/Interfaces/DataLayoutInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"

#include <limits>

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKGPUSCRATCHARENA
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

/// Every buffer starts at a multiple of this many bytes of the arena (the
/// alignment cudaMalloc gives, enough for any vector or cp.async access).
static constexpr int64_t kAlign = 256;

namespace {
/// A buffer that goes into its block's arena.
struct Buffer {
  gpu::AllocOp alloc;
  gpu::DeallocOp dealloc;
};
} // namespace

/// The single gpu.dealloc of `alloc`'s buffer, if it is in the same block;
/// null otherwise (none, several, or elsewhere).
static gpu::DeallocOp soleDealloc(gpu::AllocOp alloc) {
  gpu::DeallocOp found;
  for (Operation *user : alloc.getMemref().getUsers()) {
    auto dealloc = dyn_cast<gpu::DeallocOp>(user);
    if (!dealloc)
      continue;
    if (found || dealloc->getBlock() != alloc->getBlock())
      return {};
    found = dealloc;
  }
  return found;
}

/// Whether `v` can be available before `point`: it already is, or it is
/// computed by pure ops of point's block (after point) from values that
/// can be. Those ops are added to `moves`.
static bool availableBefore(Value v, Operation *point, DominanceInfo &dom,
                            llvm::SetVector<Operation *> &moves) {
  if (dom.properlyDominates(v, point))
    return true;
  Operation *def = v.getDefiningOp();
  if (!def || def->getBlock() != point->getBlock() ||
      def->getNumRegions() != 0 || !isMemoryEffectFree(def))
    return false;
  if (moves.contains(def))
    return true;
  for (Value operand : def->getOperands())
    if (!availableBefore(operand, point, dom, moves))
      return false;
  moves.insert(def);
  return true;
}

/// Erases `op` (a gpu.alloc or gpu.dealloc now served by the arena) with
/// the waits around it: the `gpu.wait` of its token and the `gpu.wait async`
/// it started from, when nothing else uses them. Other users of its token
/// get its start token (or a fresh one).
static void eraseStreamOp(Operation *op) {
  auto async = cast<gpu::AsyncOpInterface>(op);
  auto deps = async.getAsyncDependencies();
  Value start = deps.empty() ? Value() : deps.front();
  if (Value token = async.getAsyncToken()) {
    for (Operation *user : llvm::make_early_inc_range(token.getUsers())) {
      auto wait = dyn_cast<gpu::WaitOp>(user);
      if (wait && !wait.getAsyncToken() && wait->getNumOperands() == 1)
        wait.erase();
    }
    if (!token.use_empty()) {
      if (!start) {
        OpBuilder b(op);
        start =
            gpu::WaitOp::create(b, op->getLoc(),
                                b.getType<gpu::AsyncTokenType>(), ValueRange{})
                .getAsyncToken();
      }
      token.replaceAllUsesWith(start);
    }
  }
  op->erase();
  if (!start || !start.use_empty())
    return;
  if (auto wait = start.getDefiningOp<gpu::WaitOp>();
      wait && wait.getAsyncDependencies().empty())
    wait.erase();
}

/// Gives `buffers` (in block order, at least one) one arena allocated where
/// the first of them was.
static void buildArena(ArrayRef<Buffer> buffers, ArrayRef<Operation *> moves) {
  gpu::AllocOp first = buffers.front().alloc;
  Location loc = first.getLoc();
  for (Operation *op : moves)
    op->moveBefore(first);
  OpBuilder b(first);
  DataLayout layout = DataLayout::closest(first);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value max = arith::ConstantIndexOp::create(
      b, loc, std::numeric_limits<int64_t>::max());
  Value yes = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 1);
  // Offsets: each buffer's bytes rounded up to kAlign, summed; every step
  // checked (x <= max - y before x + y).
  Value total = zero, fits = yes;
  SmallVector<Value> offsets;
  auto addChecked = [&](Value x, int64_t y, Value yv) {
    Value room = yv ? arith::SubIOp::create(b, loc, max, yv).getResult()
                    : arith::ConstantIndexOp::create(
                          b, loc, std::numeric_limits<int64_t>::max() - y)
                          .getResult();
    Value ok =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule, x, room);
    fits = arith::AndIOp::create(b, loc, fits, ok);
    return arith::AddIOp::create(
        b, loc, x, yv ? yv : arith::ConstantIndexOp::create(b, loc, y));
  };
  for (Buffer buffer : buffers) {
    MemRefType type = buffer.alloc.getType();
    CheckedBytes size =
        emitCheckedBytes(b, loc, type, buffer.alloc.getDynamicSizes(),
                         layout.getTypeSize(type.getElementType()));
    fits = arith::AndIOp::create(b, loc, fits, size.fits);
    Value padded = addChecked(size.bytes, kAlign - 1, Value());
    Value aligned = arith::AndIOp::create(
        b, loc, padded, arith::ConstantIndexOp::create(b, loc, ~(kAlign - 1)));
    offsets.push_back(total);
    total = addChecked(total, 0, aligned);
  }
  Value empty =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, total, zero);

  auto arenaType = MemRefType::get({ShapedType::kDynamic}, b.getI8Type());
  auto arena = cast<gpu::AllocOp>(
      emitOnStreamAndWait(b, loc, [&](Type token, Value start) {
        return gpu::AllocOp::create(b, loc, arenaType, token, start,
                                    ValueRange{total}, ValueRange{},
                                    /*hostShared=*/nullptr);
      }));
  // The views, after the arena's wait (the op after it).
  b.setInsertionPointAfter(arena->getNextNode());
  for (auto [buffer, offset] : llvm::zip(buffers, offsets)) {
    gpu::AllocOp alloc = Buffer(buffer).alloc;
    Value view = memref::ViewOp::create(b, alloc.getLoc(), alloc.getType(),
                                        arena.getMemref(), offset,
                                        alloc.getDynamicSizes());
    alloc.getMemref().replaceAllUsesWith(view);
  }
  // One deallocation, where the last buffer was freed (after every use of
  // every buffer: each was freed after its own uses).
  gpu::DeallocOp last = buffers.front().dealloc;
  for (Buffer buffer : buffers)
    if (last->isBeforeInBlock(buffer.dealloc))
      last = buffer.dealloc;
  OpBuilder db(last);
  emitOnStreamAndWait(db, last.getLoc(), [&](Type token, Value start) {
    return gpu::DeallocOp::create(db, last.getLoc(), token, start,
                                  arena.getMemref());
  });
  for (Buffer buffer : buffers) {
    eraseStreamOp(buffer.dealloc);
    eraseStreamOp(buffer.alloc);
  }
  // Where the sum overflows, nothing from the arena's stream on runs; where
  // the allocation fails, nothing after its wait (which ends that stream).
  Operation *start = arena->getPrevNode(), *ready = arena->getNextNode();
  if (restIsSelfContained(start))
    guardAllocation(start, arena.getMemref(), fits, empty, ready);
}

namespace {
struct SparseKGPUScratchArenaPass
    : mlir::sparsek::impl::SparseKGPUScratchArenaBase<
          SparseKGPUScratchArenaPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Host allocations by block, in block order.
    llvm::MapVector<Block *, SmallVector<gpu::AllocOp>> byBlock;
    module.walk<WalkOrder::PreOrder>([&](Operation *op) {
      if (isa<gpu::GPUModuleOp, gpu::LaunchOp>(op))
        return WalkResult::skip();
      if (auto alloc = dyn_cast<gpu::AllocOp>(op))
        byBlock[alloc->getBlock()].push_back(alloc);
      return WalkResult::advance();
    });
    bool statusReady = false;
    for (auto &[block, allocs] : byBlock) {
      // Fresh for each block: guarding an earlier one moved ops into new
      // regions.
      DominanceInfo dom(module);
      SmallVector<Buffer> buffers;
      llvm::SetVector<Operation *> moves;
      for (gpu::AllocOp alloc : allocs) {
        auto type = alloc.getType();
        if (alloc.getHostShared() || !alloc.getSymbolOperands().empty() ||
            !type.getLayout().isIdentity() || type.getMemorySpace() ||
            !type.getElementType().isIntOrIndexOrFloat())
          continue;
        gpu::DeallocOp dealloc = soleDealloc(alloc);
        if (!dealloc)
          continue;
        // Sizes computable at the first buffer (trivially so for the first).
        llvm::SetVector<Operation *> mine = moves;
        if (!buffers.empty() &&
            !llvm::all_of(alloc.getDynamicSizes(), [&](Value size) {
              return availableBefore(size, buffers.front().alloc, dom, mine);
            }))
          continue;
        moves = std::move(mine);
        buffers.push_back({alloc, dealloc});
      }
      // One buffer gains nothing but its guard; leave it.
      if (buffers.size() < 2)
        continue;
      if (!statusReady) {
        ensureStatusSymbols(module);
        statusReady = true;
      }
      // Moved ops keep their order: it already respects their uses.
      SmallVector<Operation *> ordered(moves.begin(), moves.end());
      llvm::sort(ordered, [](Operation *x, Operation *y) {
        return x->isBeforeInBlock(y);
      });
      buildArena(buffers, ordered);
    }
  }
};
} // namespace
