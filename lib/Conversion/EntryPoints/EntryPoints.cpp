//===- EntryPoints.cpp - The sparsek-entry-points pass --------------------===//
//
// Generated host code checks no return value and creates its own streams;
// frameworks need a status per call and their own stream. Each public
// function gets a companion `<name>_entry` that provides both around it.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/IR/SymbolTable.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKENTRYPOINTS
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

/// The external function `name` of `type`, declared once in `module`.
static func::FuncOp declare(ModuleOp module, StringRef name,
                            FunctionType type) {
  if (auto f = module.lookupSymbol<func::FuncOp>(name))
    return f;
  OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
  auto f = func::FuncOp::create(b, module.getLoc(), name, type);
  f.setPrivate();
  return f;
}

namespace {
struct SparseKEntryPointsPass
    : mlir::sparsek::impl::SparseKEntryPointsBase<SparseKEntryPointsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    ensureStatusSymbols(module);
    MLIRContext *ctx = &getContext();
    Type i32 = IntegerType::get(ctx, 32);
    Type ptr = LLVM::LLVMPointerType::get(ctx);
    SmallVector<func::FuncOp> targets;
    // Only the status accessors are skipped: a user function may well be
    // called sparsek_layer.
    auto isStatusAccessor = [](func::FuncOp f) {
      return f.getName() == "sparsek_status" ||
             f.getName() == "sparsek_clear_status";
    };
    for (auto f : module.getOps<func::FuncOp>())
      if (f.isPublic() && !f.isExternal() && !isStatusAccessor(f) &&
          f.getNumResults() == 0)
        targets.push_back(f);
    SymbolTable symbols(module);
    for (func::FuncOp f : targets) {
      std::string name = (f.getName() + "_entry").str();
      if (symbols.lookup(name)) {
        f.emitError() << "sparsek-entry-points: '" << name
                      << "' already exists";
        return signalPassFailure();
      }
      SmallVector<Type> inputs;
      if (gpu)
        inputs.push_back(ptr);
      llvm::append_range(inputs, f.getArgumentTypes());
      OpBuilder b(f);
      b.setInsertionPointAfter(f);
      Location loc = f.getLoc();
      auto entry =
          func::FuncOp::create(b, loc, name, b.getFunctionType(inputs, {i32}));
      entry->setAttr("llvm.emit_c_interface", UnitAttr::get(ctx));
      symbols.insert(entry);
      b.setInsertionPointToStart(entry.addEntryBlock());
      ValueRange args = entry.getArguments();
      if (gpu) {
        // sk_rt_lend_stream, not sk_rt_set_current_stream: a null stream is
        // the legacy default stream (torch's default), which the kernels
        // must run on rather than on a fresh stream.
        declare(module, "sk_rt_lend_stream", b.getFunctionType({ptr}, {}));
        declare(module, "sk_rt_set_current_stream",
                b.getFunctionType({ptr}, {}));
        func::CallOp::create(b, loc, "sk_rt_lend_stream", TypeRange{},
                             args.front());
        args = args.drop_front();
      }
      func::CallOp::create(b, loc, "sparsek_clear_status", TypeRange{},
                           ValueRange{});
      func::CallOp::create(b, loc, f, args);
      Value status = func::CallOp::create(b, loc, "sparsek_status",
                                          TypeRange{i32}, ValueRange{})
                         .getResult(0);
      if (gpu) {
        // Back to the runtime's own streams; a CUDA failure during the call
        // is reported unless the compiled checks already failed.
        Value null = LLVM::ZeroOp::create(b, loc, ptr);
        func::CallOp::create(b, loc, "sk_rt_set_current_stream", TypeRange{},
                             null);
        declare(module, "sk_rt_get_status", b.getFunctionType({}, {i32}));
        Value cuda = func::CallOp::create(b, loc, "sk_rt_get_status",
                                          TypeRange{i32}, ValueRange{})
                         .getResult(0);
        Value zero = arith::ConstantIntOp::create(b, loc, i32, 0);
        Value ok = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                         status, zero);
        Value cudaFailed =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, cuda, zero);
        Value runtimeError =
            arith::ConstantIntOp::create(b, loc, i32, SPARSEK_ERROR_RUNTIME);
        Value useRuntime = arith::AndIOp::create(b, loc, ok, cudaFailed);
        status =
            arith::SelectOp::create(b, loc, useRuntime, runtimeError, status);
      }
      func::ReturnOp::create(b, loc, status);
    }
  }
};
} // namespace
