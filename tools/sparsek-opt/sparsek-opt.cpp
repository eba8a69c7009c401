//===- sparsek-opt.cpp - mlir-opt with the sparsek dialect and passes -----===//
//
// Every upstream dialect, extension and pass, plus ours: what a user needs to
// run and test the SparseK pipelines from the command line.
//
//===----------------------------------------------------------------------===//
#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Support/FileSystem.h"

#include <cstdlib>

#include "sparsek/Conversion/Passes.h"
#include "sparsek/Dialect/SparseK/IR/SparseKDialect.h"
#include "sparsek/Dialect/SparseK/IR/TilingInterfaceImpl.h"
#include "sparsek/Dialect/SparseK/Transforms/BufferizableOpInterfaceImpl.h"
#include "sparsek/Dialect/SparseK/Transforms/Passes.h"
#include "sparsek/Pipelines/Pipelines.h"

/// MLIR's NVVM target finds ptxas and libdevice (needed for math functions
/// in kernels) through CUDA_ROOT, CUDA_HOME or CUDA_PATH; Debian's build has
/// no default, so point it at the standard toolkit location when unset.
static void defaultCudaToolkitPath() {
  for (const char *var : {"CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"})
    if (std::getenv(var))
      return;
  if (llvm::sys::fs::is_directory("/usr/local/cuda"))
    setenv("CUDA_HOME", "/usr/local/cuda", /*overwrite=*/0);
}

int main(int argc, char **argv) {
  defaultCudaToolkitPath();
  mlir::registerAllPasses();
  mlir::sparsek::registerSparseKPasses();
  mlir::sparsek::registerSparseKConversionPasses();
  mlir::sparsek::registerSparseKPipelines();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // gpu-module-to-binary translates kernels to LLVM IR in process.
  mlir::registerAllToLLVMIRTranslations(registry);
  registry.insert<mlir::sparsek::SparseKDialect>();
  mlir::sparsek::registerBufferizableOpInterfaceExternalModels(registry);
  mlir::sparsek::registerTilingInterfaceExternalModels(registry);

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "SparseK optimizer driver\n", registry));
}
