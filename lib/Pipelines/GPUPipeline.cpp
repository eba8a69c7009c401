//===- GPUPipeline.cpp - sparsek-gpu-pipeline -----------------------------===//
//
// Tensor-level sparsek IR -> bufferized, destination-passing entry points
// (as on the CPU; select_attention kept whole for its fused lowering unless
// fuse-select-attention=false) -> sparsek ops lowered to scf.parallel nests
// (outer loop over (batch, head, query block), inner loop over the block's
// queries; selection in kernels over query chunks), bf16/f16 matmuls (a
// layer's projections) to mma.sync tiles (sparsek-gpu-matmul-tiles, unless
// matmul-tiles=false), other linalg ops to scf.parallel over their parallel
// dimensions, tiled into 128-thread blocks along the innermost one
// (sparsek-gpu-thread-tiles) -> mapped to GPU blocks and threads -> kernels'
// device status made the runtime's words (sparsek-gpu-device-status) -> kernels
// outlined (and named apart: sparsek-gpu-name-kernels) -> host buffers the
// kernels use moved to the GPU (sparsek-gpu-host-allocs), a block's device
// buffers carved out of one checked allocation (sparsek-gpu-scratch-arena) ->
// on sm_90 and later, kernels that first wait for the grid before them, which
// the runtime launches while it drains (sparsek-gpu-launch-dependents) ->
// upstream gpu-lower-to-nvvm-pipeline: NVVM, a binary for `chip` (sm_90 by
// default) embedded in the module, host code calling the runtime's mgpu*
// functions. Every public function `f` also gets
// `f_entry(stream, buffers...) -> status` (sparsek-entry-points), the C entry
// point frameworks call.
//
// Before the loops: the fused select_attention ops the tile kernels cover go
// tile first (sparsek-tile-select-attention: prefill-kernel=auto, the
// default, takes wgmma on chip=sm_90a and mma-sync elsewhere), and
// decode_attention with decode-kernel=tiles, the default, or tiles-mma
// (sparsek-tile-decode-attention), and select_attention_grad with
// backward-kernel=tiles, the default (mma.sync tiles of 128 rows unless
// grad-tile-rows says otherwise). What is left keeps one thread per query
// (per candidate, chunk or list entry in the selection kernels, per output
// element for linalg ops), scalar loops inside.
// Operand data is only read inside the kernels; the host checks sizes
// (descriptors).
//
//===----------------------------------------------------------------------===//
#include "sparsek/Pipelines/Pipelines.h"

#include "FrontStages.h"
#include "Registration.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;

/// Whether the target has red.global.add.v2.f32: chip sm_90 or later and
/// PTX 8.1 or later among the features.
static bool
hasVectorAtomics(const sparsek::SparseKGPUPipelineOptions &options) {
  return sparsek::chipAtLeast(options, 90) &&
         sparsek::featuresPtxVersion(options) >= 81;
}

/// Whether kernels wait for the grid before them and launch while it
/// drains: launch-dependents on a chip with griddepcontrol (sm_90 or later).
static bool
launchesDependents(const sparsek::SparseKGPUPipelineOptions &options) {
  return options.launchDependents && sparsek::chipAtLeast(options, 90);
}

LogicalResult
sparsek::buildSparseKGPUPipeline(OpPassManager &pm,
                                 const SparseKGPUPipelineOptions &options,
                                 OptionErrorHandler report) {
  if (failed(verifyPipelineOptions(
          options,
          report ? report : OptionErrorHandler(reportOptionErrorToStderr))))
    return failure();
  // prefill-kernel=mma-sync or wgmma (auto: whichever the chip runs best):
  // the tile-first kernel takes the fused select_attention ops it covers;
  // the loops take the rest.
  // backward-kernel=tiles: the same pass takes select_attention_grad.
  PrefillKernel prefill = resolvedPrefillKernel(options);
  bool forwardTiles =
      prefill == PrefillKernel::MmaSync || prefill == PrefillKernel::Wgmma;
  // decode-kernel=tiles (the default) or tiles-mma: the split-K kernel takes
  // the decode ops it covers.
  std::string tiles =
      TileStages{prefill == PrefillKernel::Wgmma ? "wgmma" : "mma-sync",
                 static_cast<int64_t>(options.selectChunk),
                 static_cast<int64_t>(options.tileRows),
                 static_cast<int64_t>(options.gradTileRows),
                 forwardTiles,
                 options.backwardKernel == BackwardKernel::Tiles,
                 hasVectorAtomics(options),
                 options.rowSelection,
                 "kernel",
                 decodeMath(options.decodeKernel)}
          .str();
  std::string pipeline =
      frontStages(options.indexBitwidth, !options.fuseSelectAttention) + tiles +
      llvm::formatv(
          // bf16/f16 matmuls (a layer's projections) on tensor cores
          // (matmul-tiles); the other linalg ops become loops.
          "{8}"
          "sparsek-lower-to-loops{{parallel-loops=true query-block={0} "
          "select-chunk={6}},"
          "func.func(convert-linalg-to-parallel-loops),"
          // C wrappers before the entry points: those declare runtime functions
          // that must keep their plain C names.
          "{1}"
          "sparsek-entry-points{{gpu=true},"
          "canonicalize,cse,"
          "func.func(sparsek-gpu-thread-tiles,gpu-map-parallel-loops),"
          "convert-parallel-loops-to-gpu,"
          // Kernels' device status: the runtime's words, not host globals.
          "canonicalize,sparsek-gpu-device-status,"
          // Each outlined kernel a name of its own (profilers show names only).
          "gpu-kernel-outlining,sparsek-gpu-name-kernels,"
          "sparsek-gpu-host-allocs,sparsek-gpu-scratch-"
          "arena,{7}"
          "expand-strided-metadata,lower-affine,"
          "gpu-lower-to-nvvm-pipeline{{cubin-chip={2} cubin-features={3} "
          "cubin-format={4} opt-level={5}},"
          "reconcile-unrealized-casts",
          static_cast<int64_t>(options.queryBlock),
          options.cWrappers ? "func.func(llvm-request-c-wrappers)," : "",
          std::string(options.chip), std::string(options.features),
          std::string(options.format), static_cast<int>(options.optLevel),
          static_cast<int64_t>(options.selectChunk),
          launchesDependents(options) ? "sparsek-gpu-launch-dependents," : "",
          options.matmulTiles ? "sparsek-gpu-matmul-tiles," : "")
          .str();
  return parsePassPipeline(pipeline, pm);
}

void sparsek::registerSparseKGPUPipeline() {
  registerCheckedPipeline<SparseKGPUPipelineOptions>(
      "sparsek-gpu-pipeline",
      "Lower tensor-level sparsek IR to GPU kernels (NVVM, embedded binary "
      "for `chip`) and host code calling the mgpu* runtime",
      buildSparseKGPUPipeline);
}
