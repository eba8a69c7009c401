//===- CPUPipeline.cpp - sparsek-cpu-pipeline -----------------------------===//
//
// Tensor-level sparsek IR -> private functions inlined, composite ops
// decomposed -> one-shot bufferization (in place into destinations; results
// that are `outs` arguments dropped, so entry points take every buffer from
// the caller; a result that is a fresh buffer is returned, owned by the
// caller) -> explicit deallocation -> loops -> LLVM dialect.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Pipelines/Pipelines.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;

LogicalResult
sparsek::buildSparseKCPUPipeline(OpPassManager &pm,
                                 const SparseKCPUPipelineOptions &options) {
  // index-bitwidth is validated by sparsek-decompose-select-attention, which
  // fails the pipeline with a message when it is neither 32 nor 64.
  // Spelled as a textual pipeline: every stage is an upstream pass whose
  // textual options are its stable interface.
  std::string pipeline = llvm::formatv(
      "inline,sparsek-decompose-select-attention{{index-bitwidth={0}},"
      "canonicalize,cse,"
      "one-shot-bufferize{{bufferize-function-boundaries "
      "function-boundary-type-conversion=identity-layout-map},"
      "sparsek-drop-returned-arguments,"
      "func.func(ownership-based-buffer-deallocation),"
      "buffer-deallocation-simplification,bufferization-lower-deallocations,"
      "canonicalize,"
      // parallel-loops: the GPU pipeline's loop form, run sequentially here,
      // so that its logic is tested where there is no GPU.
      "sparsek-lower-to-loops{{parallel-loops={2}},sparsek-entry-points,"
      "func.func(convert-linalg-to-loops),"
      // Tiled ops (sparsek-tile) leave scf.forall, which runs sequentially.
      "func.func(scf-forall-to-for),"
      "canonicalize,cse,"
      "expand-strided-metadata,lower-affine,convert-scf-to-cf,"
      // bf16 truncation in integer arithmetic: LLVM would otherwise call
      // __truncsfbf2, which GCC 12's libgcc lacks.
      "arith-expand{{include-bf16=true},"
      "{1}"
      "convert-math-to-llvm,convert-arith-to-llvm,"
      "finalize-memref-to-llvm,convert-func-to-llvm,convert-cf-to-llvm,"
      "reconcile-unrealized-casts",
      static_cast<unsigned>(options.indexBitwidth),
      options.cWrappers ? "func.func(llvm-request-c-wrappers)," : "",
      options.parallelLoops ? "true" : "false");
  return parsePassPipeline(pipeline, pm);
}

void sparsek::registerSparseKPipelines() {
  registerSparseKGPUPipeline();
  PassPipelineRegistration<SparseKCPUPipelineOptions>(
      "sparsek-cpu-pipeline",
      "Lower tensor-level sparsek IR to the LLVM dialect for the CPU "
      "(reference path)",
      [](OpPassManager &pm, const SparseKCPUPipelineOptions &options) {
        if (failed(buildSparseKCPUPipeline(pm, options)))
          llvm::report_fatal_error("sparsek-cpu-pipeline: an upstream pass "
                                   "of the pipeline is not registered");
      });
}
