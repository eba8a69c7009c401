//===- GPULaunchDependents.cpp - sparsek-gpu-launch-dependents ------------===//
//
// Every outlined kernel waits for the grids before it (griddepcontrol.wait)
// before anything else, and its module carries a marker global that tells
// the runtime the kernel may be launched with programmatic stream
// serialization. The wait is what makes the overlapped launch safe; the
// marker is what keeps code compiled without the wait from ever being
// launched that way (runtime/lib/mgpu_wrappers.cpp, mgpuLaunchKernel).
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKGPULAUNCHDEPENDENTS
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// The global the runtime looks up in each loaded module
/// (runtime/lib/mgpu_wrappers.cpp spells the same name).
constexpr llvm::StringLiteral kMarker = "__sparsek_waits_on_grid";
/// NVPTX's global address space: the marker must be a .global symbol for
/// cuModuleGetGlobal to find it.
constexpr unsigned kGlobalAddressSpace = 1;

struct GPULaunchDependentsPass
    : sparsek::impl::SparseKGPULaunchDependentsBase<GPULaunchDependentsPass> {
  using Base::Base;

  void runOnOperation() override {
    getOperation().walk([&](gpu::GPUModuleOp module) {
      if (module.lookupSymbol(kMarker))
        return; // done by an earlier run
      bool hasKernel = false;
      for (auto func : module.getOps<gpu::GPUFuncOp>()) {
        if (!func.isKernel() || func.getBody().empty())
          continue;
        hasKernel = true;
        OpBuilder b = OpBuilder::atBlockBegin(&func.getBody().front());
        NVVM::GriddepcontrolOp::create(b, func.getLoc(),
                                       NVVM::GridDepActionKind::wait);
      }
      if (!hasKernel)
        return;
      OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
      Type i32 = b.getI32Type();
      LLVM::GlobalOp::create(b, module.getLoc(), i32, /*isConstant=*/true,
                             LLVM::Linkage::External, kMarker,
                             b.getI32IntegerAttr(1), /*alignment=*/4,
                             kGlobalAddressSpace);
    });
  }
};
} // namespace
