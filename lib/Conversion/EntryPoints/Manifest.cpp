//===- Manifest.cpp - The argument manifest entry points export -----------===//
//
// See Manifest.h. The manifest is written by the pass that creates the entry
// points, from the memref types it checks, so a caller's view of the
// signature cannot drift from the compiled code.
//
//===----------------------------------------------------------------------===//
#include "Manifest.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/DataLayoutInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/Support/JSON.h"

using namespace mlir;
using namespace mlir::sparsek;

/// Whether `user`, which takes the buffer `v` as an operand, may write
/// through it. Only memory effects that name another value clear it: an op
/// without the interface, or an effect on an unnamed resource, may write.
static bool userMayWrite(Operation *user, Value v) {
  auto effects = dyn_cast<MemoryEffectOpInterface>(user);
  if (!effects)
    return true;
  SmallVector<MemoryEffects::EffectInstance> list;
  effects.getEffects(list);
  return llvm::any_of(list, [&](const MemoryEffects::EffectInstance &e) {
    if (!isa<MemoryEffects::Write, MemoryEffects::Free>(e.getEffect()))
      return false;
    return !e.getValue() || e.getValue() == v;
  });
}

static bool mayWrite(Value buffer, DenseSet<Value> &seen) {
  SmallVector<Value> worklist;
  auto push = [&](Value v) {
    if (seen.insert(v).second)
      worklist.push_back(v);
  };
  push(buffer);
  while (!worklist.empty()) {
    Value v = worklist.pop_back_val();
    for (OpOperand &use : v.getUses()) {
      Operation *user = use.getOwner();
      if (auto call = dyn_cast<func::CallOp>(user)) {
        auto callee = SymbolTable::lookupNearestSymbolFrom<func::FuncOp>(
            call, call.getCalleeAttr());
        if (!callee || callee.isExternal())
          return true;
        push(callee.getArgument(use.getOperandNumber()));
        continue;
      }
      // Ops that hand a buffer on through a region (loop-carried, yielded)
      // have no memory effects of their own: userMayWrite assumes the worst.
      if (userMayWrite(user, v))
        return true;
      // Views, casts and anything else that returns a buffer may alias it.
      for (Value r : user->getResults())
        if (isa<BaseMemRefType>(r.getType()))
          push(r);
    }
  }
  return false;
}

bool sparsek::mayWriteArgument(func::FuncOp f, unsigned index) {
  DenseSet<Value> seen;
  return mayWrite(f.getArgument(index), seen);
}

static std::string typeName(Type t) {
  std::string s;
  llvm::raw_string_ostream os(s);
  t.print(os);
  return s;
}

static llvm::json::Object describeArgument(func::FuncOp f, unsigned i) {
  Type t = f.getArgumentTypes()[i];
  if (auto m = dyn_cast<MemRefType>(t)) {
    llvm::json::Array shape;
    for (int64_t d : m.getShape())
      shape.push_back(ShapedType::isDynamic(d) ? llvm::json::Value(nullptr)
                                               : llvm::json::Value(d));
    return llvm::json::Object{{"kind", "memref"},
                              {"element", typeName(m.getElementType())},
                              {"shape", std::move(shape)},
                              {"identity_layout", m.getLayout().isIdentity()},
                              {"written", mayWriteArgument(f, i)}};
  }
  if (isa<IndexType, IntegerType, FloatType>(t))
    return llvm::json::Object{{"kind", "scalar"}, {"element", typeName(t)}};
  // Callers must refuse to call what they cannot describe.
  return llvm::json::Object{{"kind", "unsupported"}, {"type", typeName(t)}};
}

LogicalResult sparsek::emitManifest(ModuleOp module,
                                    ArrayRef<EntryPointRecord> entries,
                                    bool stream) {
  constexpr llvm::StringLiteral text = "__sparsek_manifest_text";
  for (StringRef name : {StringRef(kManifestFunction), StringRef(text)})
    if (SymbolTable::lookupSymbolIn(module, name))
      return module.emitError()
             << "sparsek-entry-points: '" << name << "' already exists";

  llvm::json::Array functions;
  for (const EntryPointRecord &e : entries) {
    func::FuncOp f = e.function;
    llvm::json::Array args;
    for (unsigned i = 0, n = f.getNumArguments(); i < n; ++i)
      args.push_back(describeArgument(f, i));
    functions.push_back(llvm::json::Object{
        {"name", f.getName()}, {"entry", e.entry}, {"args", std::move(args)}});
  }
  DataLayout layout(module);
  llvm::json::Object manifest{
      {"version", kManifestVersion},
      {"stream", stream},
      {"index_bits", static_cast<int64_t>(layout.getTypeSizeInBits(
                         IndexType::get(module.getContext())))},
      {"functions", std::move(functions)}};
  std::string json;
  llvm::raw_string_ostream os(json);
  os << llvm::json::Value(std::move(manifest));
  json.push_back('\0');

  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
  auto arrayType =
      LLVM::LLVMArrayType::get(IntegerType::get(ctx, 8), json.size());
  auto global = LLVM::GlobalOp::create(b, loc, arrayType, /*isConstant=*/true,
                                       LLVM::Linkage::Internal, text,
                                       b.getStringAttr(json));
  auto ptr = LLVM::LLVMPointerType::get(ctx);
  auto fn = func::FuncOp::create(b, loc, kManifestFunction,
                                 b.getFunctionType({}, {ptr}));
  b.setInsertionPointToStart(fn.addEntryBlock());
  Value address = LLVM::AddressOfOp::create(b, loc, global);
  func::ReturnOp::create(b, loc, address);
  return success();
}
