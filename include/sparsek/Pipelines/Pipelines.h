//===- Pipelines.h - Named SparseK pass pipelines ---------------*- C++ -*-===//
//
// sparsek-cpu-pipeline: tensor-level sparsek IR to LLVM dialect for the CPU
// (the numerical reference path). Registered with sparsek-opt and available
// to other compilers through buildSparseKCPUPipeline.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_PIPELINES_PIPELINES_H
#define SPARSEK_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

namespace mlir {
class OpPassManager;
namespace sparsek {

struct SparseKCPUPipelineOptions
    : public PassPipelineOptions<SparseKCPUPipelineOptions> {
  PassOptions::Option<unsigned> indexBitwidth{
      *this, "index-bitwidth",
      llvm::cl::desc("Bit width of materialized selection indices (32 or 64)"),
      llvm::cl::init(32)};
  PassOptions::Option<bool> cWrappers{
      *this, "c-wrappers",
      llvm::cl::desc("Emit _mlir_ciface_ wrappers (memref descriptors by "
                     "pointer) for every function, for C and ctypes callers"),
      llvm::cl::init(true)};
};

/// Appends the CPU pipeline to `pm` (anchored on builtin.module). Fails only
/// if an upstream pass it names is not registered.
LogicalResult buildSparseKCPUPipeline(OpPassManager &pm,
                                      const SparseKCPUPipelineOptions &options);

/// Registers sparsek-cpu-pipeline for sparsek-opt and mlir-opt-like tools.
void registerSparseKPipelines();

} // namespace sparsek
} // namespace mlir

#endif // SPARSEK_PIPELINES_PIPELINES_H
