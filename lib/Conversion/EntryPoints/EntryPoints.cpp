//===- EntryPoints.cpp - The sparsek-entry-points pass --------------------===//
//
// Generated host code checks no return value and creates its own streams;
// frameworks need a status per call and their own stream. Each public
// function gets a companion `<name>_entry` that provides both around it.
// The lowerings index buffers by the sizes of the function type, so the
// entry point takes every buffer with dynamic sizes and compares each size
// the caller passes with the type before anything runs; the module also
// exports the signatures (Manifest.h).
//
//===----------------------------------------------------------------------===//
#include "Manifest.h"
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

/// The type an entry point takes for an argument of `f`: a memref with every
/// size dynamic, so that `memref.dim` reads the size the caller passed
/// instead of folding to the type's constant.
static Type callerType(Type t) {
  auto m = dyn_cast<MemRefType>(t);
  if (!m)
    return t;
  SmallVector<int64_t> sizes(m.getRank(), ShapedType::kDynamic);
  return MemRefType::get(sizes, m.getElementType(), m.getLayout(),
                         m.getMemorySpace());
}

/// i1: every size of the buffer `arg` is what `expected` says (and a
/// dynamic one is not negative), or null when nothing needs checking.
static Value emitSizesMatch(OpBuilder &b, Location loc, Value arg,
                            MemRefType expected) {
  if (!expected.getRank())
    return {};
  // The descriptor's sizes as values (memref.dim would be lowered through
  // a stack copy of the sizes array on the GPU path).
  auto metadata = memref::ExtractStridedMetadataOp::create(b, loc, arg);
  Value ok;
  for (auto [i, size] : llvm::enumerate(expected.getShape())) {
    Value got = metadata.getSizes()[i];
    Value good;
    if (ShapedType::isDynamic(size)) {
      Value zero = arith::ConstantIndexOp::create(b, loc, 0);
      good =
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, got, zero);
    } else {
      Value want = arith::ConstantIndexOp::create(b, loc, size);
      good = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, got, want);
    }
    ok = ok ? arith::AndIOp::create(b, loc, ok, good) : good;
  }
  return ok;
}

/// Calls `f` on the entry point's `args` when their sizes match f's type;
/// otherwise records SPARSEK_ERROR_SHAPE_MISMATCH and runs nothing.
static void emitCheckedCall(OpBuilder &b, Location loc, func::FuncOp f,
                            ValueRange args) {
  Value ok;
  for (auto [arg, type] : llvm::zip(args, f.getArgumentTypes()))
    if (auto m = dyn_cast<MemRefType>(type))
      if (Value good = emitSizesMatch(b, loc, arg, m))
        ok = ok ? arith::AndIOp::create(b, loc, ok, good) : good;
  auto call = [&](OpBuilder &nb, Location nl) {
    SmallVector<Value> operands;
    for (auto [arg, type] : llvm::zip(args, f.getArgumentTypes()))
      operands.push_back(arg.getType() == type
                             ? arg
                             : memref::CastOp::create(nb, nl, type, arg));
    func::CallOp::create(nb, nl, f, operands);
  };
  if (!ok)
    return call(b, loc);
  scf::IfOp::create(
      b, loc, ok,
      [&](OpBuilder &nb, Location nl) {
        call(nb, nl);
        scf::YieldOp::create(nb, nl);
      },
      [&](OpBuilder &nb, Location nl) {
        emitSetStatus(nb, nl, f, SPARSEK_ERROR_SHAPE_MISMATCH);
        scf::YieldOp::create(nb, nl);
      });
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
             f.getName() == "sparsek_clear_status" ||
             f.getName() == kManifestFunction;
    };
    for (auto f : module.getOps<func::FuncOp>())
      if (f.isPublic() && !f.isExternal() && !isStatusAccessor(f) &&
          f.getNumResults() == 0)
        targets.push_back(f);
    SymbolTable symbols(module);
    SmallVector<EntryPointRecord> records;
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
      for (Type t : f.getArgumentTypes())
        inputs.push_back(callerType(t));
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
      emitCheckedCall(b, loc, f, args);
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
      records.push_back({f, name});
    }
    if (failed(emitManifest(module, records, gpu)))
      signalPassFailure();
  }
};
} // namespace
