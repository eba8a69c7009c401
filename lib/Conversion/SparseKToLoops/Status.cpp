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

static Value statusWord(OpBuilder &b, Location loc) {
  return memref::GetGlobalOp::create(b, loc, statusType(b.getContext()),
                                     sparsek::kStatusGlobal);
}

void sparsek::ensureStatusSymbols(ModuleOp module) {
  if (SymbolTable::lookupSymbolIn(module, kStatusGlobal))
    return;
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
  auto i32 = IntegerType::get(ctx, 32);
  auto zero = DenseElementsAttr::get(RankedTensorType::get({}, i32),
                                     b.getI32IntegerAttr(0).getValue());
  memref::GlobalOp::create(b, loc, kStatusGlobal, b.getStringAttr("private"),
                           statusType(ctx), zero, /*constant=*/false,
                           /*alignment=*/nullptr);

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

Value sparsek::emitCheck(OpBuilder &b, Location loc, Operation *anchor,
                         Value ok, int32_t code) {
  if (auto cst = getConstantIntValue(ok); cst && *cst)
    return ok;
  Value bad = arith::XOrIOp::create(
      b, loc, ok, arith::ConstantIntOp::create(b, loc, b.getI1Type(), 1));
  scf::IfOp::create(b, loc, bad, [&](OpBuilder &nb, Location nl) {
    emitSetStatus(nb, nl, anchor, code);
    scf::YieldOp::create(nb, nl);
  });
  return ok;
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
