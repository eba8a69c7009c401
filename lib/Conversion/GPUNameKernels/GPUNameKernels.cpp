//===- GPUNameKernels.cpp - sparsek-gpu-name-kernels ----------------------===//
//
// Outlined kernels share their function's name (gpu-kernel-outlining names
// the kernel of every launch of `f` `f_kernel`, in modules `f_kernel`,
// `f_kernel_0`, ...), and profilers show a kernel by that name alone. Each
// such kernel whose name another gpu.module also uses takes its module's
// unique symbol name, and the launches follow.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKGPUNAMEKERNELS
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

namespace {
struct GPUNameKernelsPass
    : sparsek::impl::SparseKGPUNameKernelsBase<GPUNameKernelsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp top = getOperation();
    SmallVector<gpu::GPUModuleOp> modules(top.getOps<gpu::GPUModuleOp>());
    // How many modules use each kernel name.
    llvm::StringMap<int> uses;
    for (gpu::GPUModuleOp module : modules)
      for (auto func : module.getOps<gpu::GPUFuncOp>())
        if (func.isKernel())
          ++uses[func.getName()];
    // (module, old kernel name) -> new name.
    DenseMap<std::pair<StringAttr, StringAttr>, StringAttr> renamed;
    MLIRContext *ctx = &getContext();
    for (gpu::GPUModuleOp module : modules) {
      SymbolTable table(module);
      // Renaming changes attributes only: a plain walk of the functions.
      for (auto func : module.getOps<gpu::GPUFuncOp>()) {
        // Outlining's modules: `f_kernel_N` holding `f_kernel`. Kernels the
        // compiler named itself (`tiles`, ...) keep their names, which tests
        // and profiling scripts look for.
        StringRef name = module.getName();
        if (!func.isKernel() || uses.lookup(func.getName()) < 2 ||
            name == func.getName() || !name.starts_with(func.getName()) ||
            table.lookup(name))
          continue;
        StringAttr old = func.getNameAttr();
        if (failed(table.rename(func, name))) {
          func.emitError("sparsek-gpu-name-kernels: cannot rename the kernel");
          return signalPassFailure();
        }
        renamed[{module.getNameAttr(), old}] = StringAttr::get(ctx, name);
      }
    }
    if (renamed.empty())
      return;
    top.walk([&](gpu::LaunchFuncOp launch) {
      auto it =
          renamed.find({launch.getKernelModuleName(), launch.getKernelName()});
      if (it == renamed.end())
        return;
      launch.setKernelAttr(SymbolRefAttr::get(
          launch.getKernelModuleName(), FlatSymbolRefAttr::get(it->second)));
    });
  }
};
} // namespace
