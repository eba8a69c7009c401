//===- CPUPipeline.cpp - sparsek-cpu-pipeline -----------------------------===//
//
// The front stages (FrontStages.h: bufferized, destination-passing entry
// points) -> loops -> LLVM dialect.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Pipelines/Pipelines.h"

#include "FrontStages.h"
#include "Registration.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;

LogicalResult
sparsek::buildSparseKCPUPipeline(OpPassManager &pm,
                                 const SparseKCPUPipelineOptions &options,
                                 OptionErrorHandler report) {
  if (failed(verifyPipelineOptions(
          options,
          report ? report : OptionErrorHandler(reportOptionErrorToStderr))))
    return failure();
  // Spelled as a textual pipeline: every stage is an upstream pass whose
  // textual options are its stable interface.
  bool tiles = options.prefillKernel == PrefillKernel::Tiles;
  bool gradTiles = options.backwardKernel == BackwardKernel::Tiles;
  std::string tilePass = TileStages{"scalar",
                                    static_cast<int64_t>(options.selectChunk),
                                    static_cast<int64_t>(options.tileRows),
                                    static_cast<int64_t>(options.gradTileRows),
                                    tiles,
                                    gradTiles,
                                    /*vectorAtomics=*/false,
                                    options.rowSelection,
                                    "scalar",
                                    decodeMath(options.decodeKernel)}
                             .str();
  std::string pipeline =
      frontStages(options.indexBitwidth,
                  !options.fuseSelectAttention && !tiles) +
      tilePass +
      llvm::formatv(
          // parallel-loops: the GPU pipeline's loop form, run sequentially
          // here, so that its logic is tested where there is no GPU.
          "sparsek-lower-to-loops{{parallel-loops={1} select-chunk={2}},"
          "sparsek-entry-points,"
          // Every dynamically sized buffer (scratch, bufferized
          // intermediates) is checked before use.
          "sparsek-check-allocations,"
          "func.func(convert-linalg-to-loops),"
          // Tiled ops (sparsek-tile) leave scf.forall, which runs sequentially.
          "func.func(scf-forall-to-for),"
          "canonicalize,cse,"
          "expand-strided-metadata,lower-affine,convert-scf-to-cf,"
          // bf16 truncation in integer arithmetic: LLVM would otherwise call
          // __truncsfbf2, which GCC 12's libgcc lacks.
          "arith-expand{{include-bf16=true},"
          "{0}"
          "convert-vector-to-llvm,convert-math-to-llvm,convert-arith-to-llvm,"
          "finalize-memref-to-llvm,convert-func-to-llvm,convert-cf-to-llvm,"
          "reconcile-unrealized-casts",
          options.cWrappers ? "func.func(llvm-request-c-wrappers)," : "",
          options.parallelLoops ? "true" : "false",
          static_cast<int64_t>(options.selectChunk))
          .str();
  return parsePassPipeline(pipeline, pm);
}

void sparsek::registerSparseKPipelines() {
  registerSparseKGPUPipeline();
  registerCheckedPipeline<SparseKCPUPipelineOptions>(
      "sparsek-cpu-pipeline",
      "Lower tensor-level sparsek IR to the LLVM dialect for the CPU "
      "(reference path)",
      buildSparseKCPUPipeline);
}
