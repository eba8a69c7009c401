//===- SparseK.cpp - The sparsek dialect, passes and pipelines in mlir-c --===//
//
// Implements include/sparsek-c/SparseK.h in the style of upstream dialects'
// C API (mlir/lib/CAPI/Dialect/*.cpp).
//
//===----------------------------------------------------------------------===//
#include "sparsek-c/SparseK.h"
#include "mlir/CAPI/IR.h"
#include "mlir/CAPI/Pass.h"
#include "mlir/CAPI/Registration.h"
#include "mlir/InitAllPasses.h"
#include "sparsek/InitAllSparseK.h"

using namespace mlir;
using namespace mlir::sparsek;

MLIR_DEFINE_CAPI_DIALECT_REGISTRATION(SparseK, sparsek, SparseKDialect)

void mlirSparseKRegisterDialects(MlirDialectRegistry registry) {
  registerAllSparseKDialects(*unwrap(registry));
}

void mlirRegisterSparseKPipelines(void) {
  // The pipelines are built from pass names, ours and upstream's: register
  // all of them, or using a pipeline would be a fatal error. Once only: a
  // pipeline name registered twice is fatal in assertion-enabled builds.
  static const bool registered = [] {
    setDefaultCudaToolkitPath();
    registerAllPasses();
    registerAllSparseKPasses();
    return true;
  }();
  (void)registered;
}

#ifdef __cplusplus
extern "C" {
#endif
#include "sparsek/Conversion/Passes.capi.cpp.inc"
#include "sparsek/Dialect/SparseK/Transforms/Passes.capi.cpp.inc"
#ifdef __cplusplus
}
#endif
