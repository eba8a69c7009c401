//===- GPUDeviceStatus.cpp - The sparsek-gpu-device-status pass -----------===//
//
// Kernels report invalid input through the device status (Status.h), which
// the lowerings spell as the module's host globals: right for the CPU, where
// the parallel form runs on the host, but a kernel cannot reach host
// globals. Here every kernel use of them becomes the runtime's per-library
// words (device word, host-mapped mirror; runtime mgpu.h), fetched by host
// code before the launch; the module also gets the host functions that read
// and clear them.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKGPUDEVICESTATUS
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

static constexpr llvm::StringLiteral kWordFunction = "sk_rt_device_status_word";
static constexpr llvm::StringLiteral kMirrorFunction =
    "sk_rt_device_status_mirror";

/// The external function `name` of `type`, declared once in `module`.
static func::FuncOp declare(ModuleOp module, StringRef name, FunctionType type,
                            bool cInterface = false) {
  if (auto f = module.lookupSymbol<func::FuncOp>(name))
    return f;
  OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
  auto f = func::FuncOp::create(b, module.getLoc(), name, type);
  f.setPrivate();
  // memref results cross the C boundary as an out-pointer to a descriptor.
  if (cInterface)
    f->setAttr("llvm.emit_c_interface", b.getUnitAttr());
  return f;
}

/// The host op a kernel use of a value hangs from: the outermost gpu.launch
/// around `user`, or the gpu.launch_func that `user` is; null for host uses.
static Operation *launchOf(Operation *user) {
  if (isa<gpu::LaunchFuncOp>(user))
    return user;
  Operation *launch = nullptr;
  for (Operation *p = user; p; p = p->getParentOp())
    if (isa<gpu::LaunchOp>(p))
      launch = p;
  return launch;
}

/// Host code: the library key (the address of its host status word).
static Value emitKey(OpBuilder &b, Location loc) {
  Value word = memref::GetGlobalOp::create(
      b, loc, MemRefType::get({}, b.getI32Type()), kStatusGlobal);
  return memref::ExtractAlignedPointerAsIndexOp::create(b, loc, word);
}

/// Adds `int32_t sparsek_device_status(void)` and
/// `void sparsek_clear_device_status(void *stream)` (mgpu.h's read and
/// clear for this library).
static void emitAccessors(ModuleOp module) {
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  Type i32 = IntegerType::get(ctx, 32), index = IndexType::get(ctx);
  Type ptr = LLVM::LLVMPointerType::get(ctx);
  OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
  declare(module, "sk_rt_device_status_read",
          b.getFunctionType({index}, {i32}));
  declare(module, "sk_rt_device_status_clear",
          b.getFunctionType({index, ptr}, {}));
  if (!module.lookupSymbol("sparsek_device_status")) {
    auto read = func::FuncOp::create(b, loc, "sparsek_device_status",
                                     b.getFunctionType({}, {i32}));
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(read.addEntryBlock());
    Value code = func::CallOp::create(b, loc, "sk_rt_device_status_read",
                                      TypeRange{i32}, emitKey(b, loc))
                     .getResult(0);
    func::ReturnOp::create(b, loc, code);
  }
  if (!module.lookupSymbol("sparsek_clear_device_status")) {
    auto clear = func::FuncOp::create(b, loc, "sparsek_clear_device_status",
                                      b.getFunctionType({ptr}, {}));
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(clear.addEntryBlock());
    func::CallOp::create(b, loc, "sk_rt_device_status_clear", TypeRange{},
                         ValueRange{emitKey(b, loc), clear.getArgument(0)});
    func::ReturnOp::create(b, loc);
  }
}

namespace {
struct SparseKGPUDeviceStatusPass
    : mlir::sparsek::impl::SparseKGPUDeviceStatusBase<
          SparseKGPUDeviceStatusPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    ensureStatusSymbols(module);
    SmallVector<memref::GetGlobalOp> reads;
    module.walk<WalkOrder::PreOrder>([&](Operation *op) {
      if (isa<gpu::GPUModuleOp>(op))
        return WalkResult::skip();
      if (auto get = dyn_cast<memref::GetGlobalOp>(op))
        if (get.getName() == kStatusGlobal ||
            get.getName() == kStatusMirrorGlobal)
          reads.push_back(get);
      return WalkResult::advance();
    });

    // One runtime call per (launch, word), placed just before the launch.
    DenseMap<std::pair<Operation *, unsigned>, Value> fetched;
    auto deviceValue = [&](Operation *launch, bool mirror) {
      Value &v = fetched[{launch, mirror ? 1u : 0u}];
      if (v)
        return v;
      OpBuilder b(launch);
      Location loc = launch->getLoc();
      auto type = MemRefType::get({}, b.getI32Type());
      StringRef name = mirror ? kMirrorFunction : kWordFunction;
      declare(module, name, b.getFunctionType({b.getIndexType()}, {type}),
              /*cInterface=*/true);
      v = func::CallOp::create(b, loc, name, TypeRange{type}, emitKey(b, loc))
              .getResult(0);
      return v;
    };
    auto word = MemRefType::get({}, IntegerType::get(&getContext(), 32));
    for (memref::GetGlobalOp get : reads) {
      if (get.getType() != word) {
        get.emitError("sparsek-gpu-device-status: a status word must be a ")
            << word << ", got " << get.getType();
        return signalPassFailure();
      }
      bool mirror = get.getName() == kStatusMirrorGlobal;
      for (OpOperand &use : llvm::make_early_inc_range(get->getUses()))
        if (Operation *launch = launchOf(use.getOwner()))
          use.set(deviceValue(launch, mirror));
      if (get->use_empty())
        get->erase();
    }
    // Kernels must not see host globals; a launch_func whose kernel
    // declares them itself is the lowering's bug, reported rather than
    // miscompiled.
    WalkResult left = module.walk([&](memref::GetGlobalOp get) {
      if ((get.getName() == kStatusGlobal ||
           get.getName() == kStatusMirrorGlobal) &&
          (get->getParentOfType<gpu::LaunchOp>() ||
           get->getParentOfType<gpu::GPUModuleOp>())) {
        get.emitError("sparsek-gpu-device-status: kernel code reads the "
                      "host status word directly");
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (left.wasInterrupted())
      return signalPassFailure();
    if (auto mirror = module.lookupSymbol(kStatusMirrorGlobal))
      if (SymbolTable::symbolKnownUseEmpty(mirror, module))
        mirror->erase();
    emitAccessors(module);
  }
};
} // namespace
