/*===-- sparsek-c/SparseK.h - The sparsek dialect in the MLIR C API -*- C -*-===*\
|*                                                                            *|
|* The MLIR C API convention of upstream dialects, for C, Rust, Python or any *|
|* FFI caller that builds MLIR through mlir-c: the dialect handle, our passes *|
|* and pipelines. libSparseKCAPI.so implements it together with the upstream  *|
|* MLIR C API (mlirContextCreate, mlirModuleCreateParse, the pass manager,    *|
|* mlirRegisterAllDialects, ...), which Debian's libMLIR.so does not export.  *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/
#ifndef SPARSEK_C_SPARSEK_H
#define SPARSEK_C_SPARSEK_H

#include "mlir-c/IR.h"
#include "mlir-c/Pass.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mlirGetDialectHandle__sparsek__(): the dialect alone. */
MLIR_DECLARE_CAPI_DIALECT_REGISTRATION(SparseK, sparsek);

/* The dialect plus its bufferization and tiling models, which the pipelines
 * need; what sparsek-opt registers. */
MLIR_CAPI_EXPORTED void mlirSparseKRegisterDialects(MlirDialectRegistry registry);

/* sparsek-cpu-pipeline and sparsek-gpu-pipeline, for mlirParsePassPipeline,
 * with every pass they name: ours and upstream's (mlirRegisterAllPasses).
 * Calling it again does nothing. */
MLIR_CAPI_EXPORTED void mlirRegisterSparseKPipelines(void);

#ifdef __cplusplus
}
#endif

/* mlirRegisterSparseKPasses() and, per pass P of sparsek/Dialect/SparseK/
 * Transforms/Passes.td, mlirCreateSparseKP() / mlirRegisterSparseKP(). */
#include "sparsek/Dialect/SparseK/Transforms/Passes.capi.h.inc"
/* mlirRegisterSparseKConversionPasses() and the same for the lowering
 * passes of sparsek/Conversion/Passes.td (mlirCreateSparseKConversionP()). */
#include "sparsek/Conversion/Passes.capi.h.inc"

#endif /* SPARSEK_C_SPARSEK_H */
