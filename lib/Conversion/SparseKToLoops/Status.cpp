//===- Status.cpp - Run-time error status of lowered sparsek code ---------===//
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/SymbolTable.h"

using namespace mlir;

static MemRefType statusType(MLIRContext *ctx) {
  return MemRefType::get({}, IntegerType::get(ctx, 32));
}

static Value statusWord(OpBuilder &b, Location loc,
                        StringRef name = sparsek::kStatusGlobal) {
  return memref::GetGlobalOp::create(b, loc, statusType(b.getContext()), name);
}

/// A private, zero-initialized i32 global `name` at the start of `module`.
static void ensureWordGlobal(ModuleOp module, StringRef name) {
  if (SymbolTable::lookupSymbolIn(module, name))
    return;
  OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
  auto i32 = b.getI32Type();
  auto zero = DenseElementsAttr::get(RankedTensorType::get({}, i32),
                                     b.getI32IntegerAttr(0).getValue());
  memref::GlobalOp::create(b, module.getLoc(), name, b.getStringAttr("private"),
                           statusType(module.getContext()), zero,
                           /*constant=*/false, /*alignment=*/nullptr);
}

void sparsek::ensureStatusSymbols(ModuleOp module) {
  if (SymbolTable::lookupSymbolIn(module, kStatusGlobal))
    return;
  Location loc = module.getLoc();
  ensureWordGlobal(module, kStatusGlobal);
  OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
  b.setInsertionPointAfter(&module.getBody()->front());
  auto i32 = b.getI32Type();

  // int32_t sparsek_status(void) and void sparsek_clear_status(void).
  auto get = func::FuncOp::create(b, loc, "sparsek_status",
                                  b.getFunctionType({}, {i32}));
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(get.addEntryBlock());
    Value v = memref::LoadOp::create(b, loc, statusWord(b, loc), ValueRange{});
    func::ReturnOp::create(b, loc, v);
  }
  auto clear = func::FuncOp::create(b, loc, "sparsek_clear_status",
                                    b.getFunctionType({}, {}));
  {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(clear.addEntryBlock());
    Value zero = arith::ConstantIntOp::create(b, loc, i32, 0);
    memref::StoreOp::create(b, loc, zero, statusWord(b, loc), ValueRange{});
    func::ReturnOp::create(b, loc);
  }
}

void sparsek::emitSetStatus(OpBuilder &b, Location loc, Operation *anchor,
                            int32_t code) {
  (void)anchor;
  auto i32 = b.getI32Type();
  Value word = statusWord(b, loc);
  Value old = memref::LoadOp::create(b, loc, word, ValueRange{});
  Value zero = arith::ConstantIntOp::create(b, loc, i32, 0);
  Value first =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, old, zero);
  Value c = arith::ConstantIntOp::create(b, loc, i32, code);
  Value next = arith::SelectOp::create(b, loc, first, c, old);
  memref::StoreOp::create(b, loc, next, word, ValueRange{});
}

/// Runs `onFail` under "if not ok" (nothing when `ok` is constant true) and
/// returns `ok`: the shape of every check, host or device.
static Value emitIfFailed(OpBuilder &b, Location loc, Value ok,
                          function_ref<void(OpBuilder &, Location)> onFail) {
  if (auto cst = getConstantIntValue(ok); cst && *cst)
    return ok;
  Value bad = arith::XOrIOp::create(
      b, loc, ok, arith::ConstantIntOp::create(b, loc, b.getI1Type(), 1));
  scf::IfOp::create(b, loc, bad, [&](OpBuilder &nb, Location nl) {
    onFail(nb, nl);
    scf::YieldOp::create(nb, nl);
  });
  return ok;
}

Value sparsek::emitCheck(OpBuilder &b, Location loc, Operation *anchor,
                         Value ok, int32_t code) {
  return emitIfFailed(b, loc, ok, [&](OpBuilder &nb, Location nl) {
    emitSetStatus(nb, nl, anchor, code);
  });
}

Value sparsek::emitDimsEqual(OpBuilder &b, Location loc, Value a, unsigned ad,
                             Value c, unsigned cd) {
  auto at = cast<ShapedType>(a.getType());
  auto ct = cast<ShapedType>(c.getType());
  if (!at.isDynamicDim(ad) && !ct.isDynamicDim(cd))
    return arith::ConstantIntOp::create(b, loc, b.getI1Type(),
                                        at.getDimSize(ad) == ct.getDimSize(cd));
  Value x = memref::DimOp::create(b, loc, a, ad);
  Value y = memref::DimOp::create(b, loc, c, cd);
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, y);
}

sparsek::DeviceStatus sparsek::getDeviceStatus(OpBuilder &b, Location loc,
                                               Operation *anchor) {
  auto module = isa<ModuleOp>(anchor) ? cast<ModuleOp>(anchor)
                                      : anchor->getParentOfType<ModuleOp>();
  ensureStatusSymbols(module);
  ensureWordGlobal(module, kStatusMirrorGlobal);
  return {statusWord(b, loc), statusWord(b, loc, kStatusMirrorGlobal)};
}

/// i1: the buffer `m` has a non-null base pointer.
static Value emitNonNull(OpBuilder &b, Location loc, Value m) {
  Value ptr = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, m);
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, ptr,
                               arith::ConstantIndexOp::create(b, loc, 0));
}

void sparsek::emitDeviceStatus(OpBuilder &b, Location loc,
                               const DeviceStatus &status, int32_t code) {
  auto i32 = b.getI32Type();
  Value zero = arith::ConstantIntOp::create(b, loc, i32, 0);
  Value c = arith::ConstantIntOp::create(b, loc, i32, code);
  scf::IfOp::create(
      b, loc, emitNonNull(b, loc, status.word),
      [&](OpBuilder &nb, Location nl) {
        // Compare-and-swap 0 -> code: many threads may find errors at once;
        // the first one's code stays.
        auto cas = memref::GenericAtomicRMWOp::create(nb, nl, status.word,
                                                      ValueRange{});
        {
          OpBuilder::InsertionGuard g(nb);
          nb.setInsertionPointToStart(cas.getBody());
          Value old = cas.getCurrentValue();
          Value first = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq,
                                              old, zero);
          memref::AtomicYieldOp::create(
              nb, nl, arith::SelectOp::create(nb, nl, first, c, old));
        }
        // Only the winner writes the mirror: one writer, no atomic needed
        // there (on the GPU it is host memory, read over PCIe).
        Value won = arith::AndIOp::create(
            nb, nl,
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq,
                                  cas.getResult(), zero),
            emitNonNull(nb, nl, status.mirror));
        scf::IfOp::create(nb, nl, won, [&](OpBuilder &ib, Location il) {
          memref::StoreOp::create(ib, il, c, status.mirror, ValueRange{});
          scf::YieldOp::create(ib, il);
        });
        scf::YieldOp::create(nb, nl);
      });
}

Value sparsek::emitDeviceCheck(OpBuilder &b, Location loc, Operation *anchor,
                               Value ok, int32_t code) {
  return emitIfFailed(b, loc, ok, [&](OpBuilder &nb, Location nl) {
    emitDeviceStatus(nb, nl, getDeviceStatus(nb, nl, anchor), code);
  });
}
