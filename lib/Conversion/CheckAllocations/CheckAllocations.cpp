//===- CheckAllocations.cpp - The sparsek-check-allocations pass ----------===//
//
// A memref.alloc becomes malloc, which returns null when memory runs out,
// and its byte size is a product of run-time sizes that can overflow; the
// code after it would then write through a null or short buffer. Each
// allocation with a dynamic size is guarded: the byte size must fit in 63
// bits and the buffer must not be null (unless it is empty); otherwise the
// status word records SPARSEK_ERROR_OUT_OF_MEMORY and the rest of the
// allocation's block, which holds every use of the buffer, is skipped.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/CheckAllocations/CheckAllocations.h"
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Interfaces/DataLayoutInterfaces.h"

#include <limits>

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKCHECKALLOCATIONS
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

bool sparsek::restIsSelfContained(Operation *alloc) {
  Operation *terminator = alloc->getBlock()->getTerminator();
  for (Operation *op = alloc; op != terminator; op = op->getNextNode())
    for (Value v : op->getResults())
      for (Operation *user : v.getUsers())
        if (terminator->isAncestor(user))
          return false;
  return true;
}

CheckedBytes sparsek::emitCheckedBytes(OpBuilder &b, Location loc,
                                       MemRefType type, ValueRange dynamicSizes,
                                       int64_t elementBytes) {
  int64_t staticCount = 1;
  for (int64_t d : type.getShape())
    if (!ShapedType::isDynamic(d))
      staticCount *= d;
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  auto both = [&](Value x, Value y, bool any) -> Value {
    if (!x)
      return y;
    return any ? arith::OrIOp::create(b, loc, x, y).getResult()
               : arith::AndIOp::create(b, loc, x, y).getResult();
  };
  Value yes = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 1);
  Value fits;
  Value empty = staticCount == 0 ? yes : Value();
  // Running product, in elements times element bytes, as unsigned 64-bit
  // products with their high halves: a step fits when the high half is 0
  // and the product stays <= INT64_MAX (no division on the host's path).
  Type i64 = b.getI64Type();
  Value acc = arith::ConstantIntOp::create(
      b, loc, i64, std::max<int64_t>(1, elementBytes) * staticCount);
  Value zero64 = arith::ConstantIntOp::create(b, loc, i64, 0);
  Value max = arith::ConstantIntOp::create(b, loc, i64,
                                           std::numeric_limits<int64_t>::max());
  Value one = arith::ConstantIntOp::create(b, loc, i64, 1);
  for (Value size : dynamicSizes) {
    Value isZero =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, size, zero);
    empty = both(empty, isZero, /*any=*/true);
    Value factor = arith::SelectOp::create(
        b, loc, isZero, one, arith::IndexCastUIOp::create(b, loc, i64, size));
    auto product = arith::MulUIExtendedOp::create(b, loc, acc, factor);
    Value ok = arith::AndIOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                              product.getHigh(), zero64),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule,
                              product.getLow(), max));
    fits = both(fits, ok, /*any=*/false);
    acc = product.getLow();
  }
  if (!fits)
    fits = yes;
  if (!empty)
    empty = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 0);
  // An empty buffer's size is 0 (acc multiplied a zero size as one).
  acc = arith::SelectOp::create(
      b, loc, empty, zero,
      arith::IndexCastUIOp::create(b, loc, b.getIndexType(), acc));
  return {acc, fits, empty};
}

/// Moves `ops` (in order) to the start of `block`, before its terminator.
static void moveInto(ArrayRef<Operation *> ops, Block *block) {
  for (Operation *op : ops)
    op->moveBefore(block->getTerminator());
}

void sparsek::guardAllocation(Operation *alloc, Value buffer, Value fits,
                              Value empty, Operation *ready) {
  if (!ready)
    ready = alloc;
  Location loc = alloc->getLoc();
  OpBuilder b(alloc);
  SmallVector<Operation *> rest;
  Operation *terminator = alloc->getBlock()->getTerminator();
  for (Operation *op = alloc; op != terminator; op = op->getNextNode())
    rest.push_back(op);
  auto failed = [&](OpBuilder &nb, Location nl) {
    emitSetStatus(nb, nl, alloc, SPARSEK_ERROR_OUT_OF_MEMORY);
    scf::YieldOp::create(nb, nl);
  };
  auto outer = scf::IfOp::create(
      b, loc, fits,
      [&](OpBuilder &nb, Location nl) { scf::YieldOp::create(nb, nl); },
      failed);
  moveInto(rest, outer.thenBlock());
  // Once the allocation is made: the buffer is there (or empty).
  b.setInsertionPointAfter(ready);
  Value address =
      memref::ExtractAlignedPointerAsIndexOp::create(b, loc, buffer);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value nonNull =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, address, zero);
  Value there = arith::OrIOp::create(b, loc, nonNull, empty);
  auto inner = scf::IfOp::create(
      b, loc, there,
      [&](OpBuilder &nb, Location nl) { scf::YieldOp::create(nb, nl); },
      failed);
  auto after = llvm::find(rest, ready) + 1;
  moveInto(ArrayRef<Operation *>(after, rest.end()), inner.thenBlock());
}

static void guard(memref::AllocOp alloc) {
  OpBuilder b(alloc);
  MemRefType type = alloc.getType();
  int64_t bytes = DataLayout::closest(alloc).getTypeSize(type.getElementType());
  CheckedBytes size =
      emitCheckedBytes(b, alloc.getLoc(), type, alloc.getDynamicSizes(), bytes);
  // An empty buffer may be null: malloc(0) is allowed to return it.
  Value fits = arith::OrIOp::create(b, alloc.getLoc(), size.fits, size.empty);
  guardAllocation(alloc, alloc.getResult(), fits, size.empty);
}

namespace {
struct SparseKCheckAllocationsPass
    : mlir::sparsek::impl::SparseKCheckAllocationsBase<
          SparseKCheckAllocationsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<memref::AllocOp> allocs;
    module.walk([&](memref::AllocOp alloc) {
      if (!alloc.getDynamicSizes().empty())
        allocs.push_back(alloc);
    });
    if (allocs.empty())
      return;
    ensureStatusSymbols(module);
    for (memref::AllocOp alloc : allocs) {
      // A buffer handed to the block's terminator (returned, yielded) is
      // left unguarded: skipping its definition would leave the terminator
      // nothing to use.
      if (restIsSelfContained(alloc))
        guard(alloc);
    }
  }
};
} // namespace
