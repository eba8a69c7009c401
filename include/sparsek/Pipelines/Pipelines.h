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
#include "llvm/ADT/STLFunctionalExtras.h"

namespace mlir {
class OpPassManager;
namespace sparsek {

/// How the pipelines lower the fused select_attention.
enum class PrefillKernel {
  /// sparsek-lower-to-loops: one query per thread (GPU) or per iteration.
  Loops,
  /// sparsek-tile-select-attention{form=mma-sync}: tiles of 64 (query,
  /// head) rows on tensor cores (GPU; bf16/f16, D and Dv in {64, 128}).
  MmaSync,
  /// sparsek-tile-select-attention{form=wgmma}: the same tiles on Hopper
  /// wgmma (GPU, chip=sm_90a only).
  Wgmma,
  /// Wgmma where the chip has it (sm_90a), else MmaSync (GPU): both forms
  /// cover the same ops, so the choice never changes what is lowered tile
  /// first, only how.
  Auto,
  /// sparsek-tile-select-attention{form=scalar}: the same tile walk as
  /// loops (CPU), to test it where there is no GPU.
  Tiles,
};

/// How the pipelines lower decode_attention.
enum class DecodeKernel {
  /// sparsek-lower-to-loops: one thread per (sequence, query head, split of
  /// 64 slots) on the GPU, a merge launch after.
  Loops,
  /// sparsek-tile-decode-attention: one thread block per (sequence, KV
  /// head, split), the splits merged in the same launch (GPU: form=kernel;
  /// CPU: form=scalar, the same walk as loops); CUDA cores (math=simt).
  Tiles,
  /// The same on tensor cores (math=mma; on the CPU its walk).
  TilesMma,
};

/// How the pipelines lower select_attention_grad.
enum class BackwardKernel {
  /// sparsek-lower-to-loops: the selection, then one thread per query (GPU)
  /// or per iteration, with a pass over keys for dkey and dvalue.
  Loops,
  /// sparsek-tile-select-attention{grads=true}: the forward's tiles of 64
  /// (query, head) rows, mma.sync on the GPU (bf16/f16, D and Dv in {64,
  /// 128}), the same walk as loops on the CPU.
  Tiles,
};

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
  PassOptions::Option<bool> fuseSelectAttention{
      *this, "fuse-select-attention",
      llvm::cl::desc("Lower select_attention fused (SPEC 7: per-query "
                     "thresholds, no materialized indices) instead of "
                     "decomposing it into select + attention"),
      llvm::cl::init(false)};
  PassOptions::Option<int64_t> selectChunk{
      *this, "select-chunk",
      llvm::cl::desc("Candidates per chunk of the chunked selection (fused "
                     "select_attention; select with parallel-loops); 0 "
                     "picks one"),
      llvm::cl::init(0)};
  PassOptions::Option<bool> rowSelection{
      *this, "row-selection",
      llvm::cl::desc("prefill-kernel=tiles with the automatic chunk length: "
                     "rows of 1 to 4096 candidates take the CPU form of the "
                     "GPU's row selection instead of the chunked one"),
      llvm::cl::init(false)};
  PassOptions::Option<int64_t> tileRows{
      *this, "tile-rows",
      llvm::cl::desc("(query, head) rows per tile of prefill-kernel=tiles: "
                     "64 or 128 (the key sets of the GPU's wgmma tiles); 0 "
                     "picks 64"),
      llvm::cl::init(0)};
  PassOptions::Option<int64_t> gradTileRows{
      *this, "grad-tile-rows",
      llvm::cl::desc("(query, head) rows per tile of backward-kernel=tiles: "
                     "64 or 128 (the GPU backward's tiles); 0 picks 128"),
      llvm::cl::init(0)};
  PassOptions::Option<bool> parallelLoops{
      *this, "parallel-loops",
      llvm::cl::desc("Lower sparsek ops in the GPU pipeline's parallel loop "
                     "form (run sequentially): tests that form's logic on "
                     "the CPU. NaN and +inf scores are then masked, not "
                     "reported"),
      llvm::cl::init(false)};
  PassOptions::Option<PrefillKernel> prefillKernel{
      *this, "prefill-kernel",
      llvm::cl::desc("How the fused select_attention is lowered (with "
                     "fuse-select-attention or prefill-kernel=tiles)"),
      llvm::cl::init(PrefillKernel::Loops),
      llvm::cl::values(
          clEnumValN(PrefillKernel::Loops, "loops",
                     "one online softmax per query (sparsek-lower-to-loops)"),
          clEnumValN(PrefillKernel::Tiles, "tiles",
                     "the GPU tile walk as scalar loops "
                     "(sparsek-tile-select-attention{form=scalar}); implies "
                     "the fused form"))};
  PassOptions::Option<DecodeKernel> decodeKernel{
      *this, "decode-kernel",
      llvm::cl::desc("How decode_attention is lowered"),
      llvm::cl::init(DecodeKernel::Loops),
      llvm::cl::values(
          clEnumValN(DecodeKernel::Loops, "loops",
                     "one online softmax per query head "
                     "(sparsek-lower-to-loops)"),
          clEnumValN(DecodeKernel::Tiles, "tiles",
                     "the GPU kernel's split walk as sequential loops "
                     "(sparsek-tile-decode-attention{form=scalar}; D = Dv in "
                     "{64, 128}, G <= 8); the cache state is then clamped, "
                     "not reported"),
          clEnumValN(DecodeKernel::TilesMma, "tiles-mma",
                     "the same for the tensor-core kernel's walk "
                     "(sparsek-tile-decode-attention{form=scalar math=mma})"))};
  PassOptions::Option<BackwardKernel> backwardKernel{
      *this, "backward-kernel",
      llvm::cl::desc("How select_attention_grad is lowered"),
      llvm::cl::init(BackwardKernel::Loops),
      llvm::cl::values(
          clEnumValN(BackwardKernel::Loops, "loops",
                     "selection, attention_grad and select_grad as loops "
                     "(sparsek-lower-to-loops)"),
          clEnumValN(BackwardKernel::Tiles, "tiles",
                     "the GPU backward tile walk as scalar loops "
                     "(sparsek-tile-select-attention{form=scalar "
                     "grads=true})"))};
};

/// Receives one message per invalid pipeline option.
using OptionErrorHandler = llvm::function_ref<void(const llvm::Twine &)>;

/// Checks every option of the CPU pipeline (lib/Pipelines/PipelineOptions.cpp
/// holds the rules of both pipelines, one line per option); reports each
/// invalid one through `report`.
LogicalResult verifyPipelineOptions(const SparseKCPUPipelineOptions &options,
                                    OptionErrorHandler report = nullptr);

/// Appends the CPU pipeline to `pm` (anchored on builtin.module). Fails when
/// an option is invalid (each reported through `report`, else to
/// llvm::errs()) or an upstream pass it names is not registered.
LogicalResult buildSparseKCPUPipeline(OpPassManager &pm,
                                      const SparseKCPUPipelineOptions &options,
                                      OptionErrorHandler report = nullptr);

struct SparseKGPUPipelineOptions
    : public PassPipelineOptions<SparseKGPUPipelineOptions> {
  PassOptions::Option<unsigned> indexBitwidth{
      *this, "index-bitwidth",
      llvm::cl::desc("Bit width of materialized selection indices (32 or 64)"),
      llvm::cl::init(32)};
  PassOptions::Option<int64_t> queryBlock{
      *this, "query-block",
      llvm::cl::desc("Queries per GPU block (one query per thread)"),
      llvm::cl::init(64)};
  PassOptions::Option<std::string> chip{
      *this, "chip", llvm::cl::desc("GPU architecture"),
      llvm::cl::init("sm_90")};
  // PTX 8.1 for red.global.add.v2.f32 (the backward tiles' paired dkey and
  // dvalue atomics on sm_90+); the other kernels' PTX is the same as 8.0's.
  PassOptions::Option<std::string> features{
      *this, "features",
      llvm::cl::desc("PTX features (+ptx81 or later on sm_90+: the backward "
                     "tiles add dkey and dvalue in column pairs)"),
      llvm::cl::init("+ptx81")};
  PassOptions::Option<std::string> format{
      *this, "format",
      llvm::cl::desc("Embedded GPU binary: fatbin, bin (cubin) or isa (PTX)"),
      llvm::cl::init("fatbin")};
  PassOptions::Option<int> optLevel{
      *this, "opt-level", llvm::cl::desc("NVVM optimization level"),
      llvm::cl::init(3)};
  PassOptions::Option<bool> cWrappers{
      *this, "c-wrappers",
      llvm::cl::desc("Emit _mlir_ciface_ wrappers for host entry points"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> fuseSelectAttention{
      *this, "fuse-select-attention",
      llvm::cl::desc("Lower select_attention as one fused computation (SPEC "
                     "7: chunked selection thresholds, then attention that "
                     "never materializes indices or gates); false decomposes "
                     "it into select + attention kernels"),
      llvm::cl::init(true)};
  PassOptions::Option<int64_t> selectChunk{
      *this, "select-chunk",
      llvm::cl::desc("Candidates per chunk of the parallel selection; 0 "
                     "picks max(256, ceil(C / 64)) for C candidates per row"),
      llvm::cl::init(0)};
  PassOptions::Option<bool> rowSelection{
      *this, "row-selection",
      llvm::cl::desc("With the automatic chunk length, the tile kernels' "
                     "rows of 1 to 4096 candidates take the one-launch row "
                     "selection instead of the chunked one (not yet measured "
                     "on a GPU, so off by default)"),
      llvm::cl::init(false)};
  PassOptions::Option<int64_t> tileRows{
      *this, "tile-rows",
      llvm::cl::desc("(query, head) rows per tile of the tensor-core "
                     "prefill: 64, or 128 with prefill-kernel=wgmma (two "
                     "warpgroups share each gathered K/V tile); 0 picks 64"),
      llvm::cl::init(0)};
  PassOptions::Option<int64_t> gradTileRows{
      *this, "grad-tile-rows",
      llvm::cl::desc("(query, head) rows per tile of backward-kernel=tiles, "
                     "whatever the prefill: 64 (4 warps) or 128 (8 warps "
                     "sharing each gathered K/V tile); 0 picks 128"),
      llvm::cl::init(0)};
  PassOptions::Option<PrefillKernel> prefillKernel{
      *this, "prefill-kernel",
      llvm::cl::desc("How the fused select_attention is lowered"),
      llvm::cl::init(PrefillKernel::Auto),
      llvm::cl::values(
          clEnumValN(PrefillKernel::Auto, "auto",
                     "wgmma when chip=sm_90a, else mma-sync; the default"),
          clEnumValN(PrefillKernel::Loops, "loops",
                     "one query per thread on CUDA cores "
                     "(sparsek-lower-to-loops)"),
          clEnumValN(PrefillKernel::MmaSync, "mma-sync",
                     "tiles of 64 (query, head) rows on tensor cores "
                     "(sparsek-tile-select-attention; bf16/f16 with D and Dv "
                     "in {64, 128}, other ops keep the loops)"),
          clEnumValN(PrefillKernel::Wgmma, "wgmma",
                     "the same tiles on Hopper wgmma with double-buffered "
                     "cp.async gathers (requires chip=sm_90a)"))};
  PassOptions::Option<DecodeKernel> decodeKernel{
      *this, "decode-kernel",
      llvm::cl::desc("How decode_attention is lowered"),
      llvm::cl::init(DecodeKernel::Tiles),
      llvm::cl::values(
          clEnumValN(DecodeKernel::Loops, "loops",
                     "one thread per (sequence, query head, split of 64 "
                     "slots), then a merge launch (sparsek-lower-to-loops)"),
          clEnumValN(DecodeKernel::Tiles, "tiles",
                     "one block per (sequence, KV head, split), the G heads "
                     "sharing 16-byte K/V loads, splits merged in the same "
                     "launch (sparsek-tile-decode-attention; bf16/f16, D = "
                     "Dv in {64, 128}, G <= 8, other ops keep the loops); "
                     "CUDA cores, K/V through a cp.async ring per warp; the "
                     "default"),
          clEnumValN(DecodeKernel::TilesMma, "tiles-mma",
                     "the same launch on tensor cores: mma.sync over 16-slot "
                     "key tiles, P kept in registers "
                     "(sparsek-tile-decode-attention{math=mma})"))};
  PassOptions::Option<BackwardKernel> backwardKernel{
      *this, "backward-kernel",
      llvm::cl::desc("How select_attention_grad is lowered"),
      llvm::cl::init(BackwardKernel::Tiles),
      llvm::cl::values(
          clEnumValN(BackwardKernel::Loops, "loops",
                     "the selection, then one thread per query with a pass "
                     "over keys (sparsek-lower-to-loops)"),
          clEnumValN(BackwardKernel::Tiles, "tiles",
                     "the forward's tiles: an mma.sync kernel of two passes "
                     "over each tile's key list, dkey and dvalue added "
                     "atomically (sparsek-tile-select-attention{grads=true}; "
                     "bf16/f16, D and Dv in {64, 128}, other ops keep the "
                     "loops); the default"))};
  PassOptions::Option<bool> matmulTiles{
      *this, "matmul-tiles",
      llvm::cl::desc(
          "bf16/f16 linalg.matmul into f32 (a layer's projections) on "
          "mma.sync tensor-core tiles (sparsek-gpu-matmul-tiles); false keeps "
          "one thread per output element"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> launchDependents{
      *this, "launch-dependents",
      llvm::cl::desc(
          "Launch each kernel while the one before it drains: it first "
          "waits for that grid (sparsek-gpu-launch-dependents, programmatic "
          "dependent launch; sm_90 and later, ignored for older chips)"),
      llvm::cl::init(true)};
};

/// A GPU block has at most this many threads (CUDA's limit); query-block
/// gives one to each query.
constexpr int64_t kMaxGPUBlockThreads = 1024;

/// The kernel the GPU pipeline lowers the fused select_attention to:
/// prefill-kernel, with auto resolved for the chip (Wgmma on sm_90a, else
/// MmaSync).
PrefillKernel resolvedPrefillKernel(const SparseKGPUPipelineOptions &options);

/// Whether the pipeline's chip is sm_`version` or later (sm_90a counts as
/// 90): the features a kernel may use.
bool chipAtLeast(const SparseKGPUPipelineOptions &options, unsigned version);

/// The highest PTX ISA version among the `features` (+ptx81 -> 81; 0 when
/// none is named).
unsigned featuresPtxVersion(const SparseKGPUPipelineOptions &options);

/// Checks every option of the GPU pipeline; reports each invalid one
/// through `report`.
LogicalResult verifyPipelineOptions(const SparseKGPUPipelineOptions &options,
                                    OptionErrorHandler report = nullptr);

/// Appends the GPU pipeline to `pm` (anchored on builtin.module). Fails as
/// buildSparseKCPUPipeline does.
LogicalResult buildSparseKGPUPipeline(OpPassManager &pm,
                                      const SparseKGPUPipelineOptions &options,
                                      OptionErrorHandler report = nullptr);

/// Registers sparsek-gpu-pipeline.
void registerSparseKGPUPipeline();

/// Registers sparsek-cpu-pipeline and sparsek-gpu-pipeline for sparsek-opt
/// and mlir-opt-like tools.
void registerSparseKPipelines();

} // namespace sparsek
} // namespace mlir

#endif // SPARSEK_PIPELINES_PIPELINES_H
