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
#include "sparsek/InitAllSparseK.h"

int main(int argc, char **argv) {
  mlir::sparsek::setDefaultCudaToolkitPath();
  mlir::registerAllPasses();
  mlir::sparsek::registerAllSparseKPasses();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // gpu-module-to-binary translates kernels to LLVM IR in process.
  mlir::registerAllToLLVMIRTranslations(registry);
  mlir::sparsek::registerAllSparseKDialects(registry);

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "SparseK optimizer driver\n", registry));
}
