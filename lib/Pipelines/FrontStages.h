//===- FrontStages.h - The stages both SparseK pipelines start with -------===//
//
// Tensor-level sparsek IR -> private functions inlined, composite ops
// decomposed (unless they are to be lowered fused) -> one-shot bufferization
// (in place into destinations; results that are `outs` arguments dropped, so
// entry points take every buffer from the caller; a result that is a fresh
// buffer is returned, owned by the caller) -> explicit deallocation ->
// linalg ops guarded by run-time checks of the dynamic sizes their operands
// share (sparsek-check-linalg-sizes). The CPU and GPU pipelines differ only
// after this point; both then run the same tile-first stages (TileStages).
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_PIPELINES_FRONTSTAGES_H
#define SPARSEK_LIB_PIPELINES_FRONTSTAGES_H

#include "sparsek/Pipelines/Pipelines.h"

#include "llvm/Support/FormatVariadic.h"

#include <string>

namespace mlir::sparsek {

/// The textual pipeline of the shared front stages, ending in a comma.
/// index-bitwidth is validated by sparsek-decompose-select-attention, which
/// fails the pipeline with a message when it is neither 32 nor 64.
/// With `decompose` false the composite select_attention stays whole, for
/// sparsek-lower-to-loops' fused lowering (and index-bitwidth, which only
/// types the decomposition's indices, is unused).
inline std::string frontStages(unsigned indexBitwidth, bool decompose = true) {
  std::string decomposition =
      decompose ? llvm::formatv("sparsek-decompose-select-attention{{"
                                "index-bitwidth={0}},",
                                indexBitwidth)
                      .str()
                : std::string();
  return llvm::formatv(
      "inline,{0}"
      "canonicalize,cse,"
      "one-shot-bufferize{{bufferize-function-boundaries "
      "function-boundary-type-conversion=identity-layout-map},"
      "sparsek-drop-returned-arguments,"
      "func.func(ownership-based-buffer-deallocation),"
      "buffer-deallocation-simplification,bufferization-lower-deallocations,"
      // CSE first: bufferization writes a slice of a destination through
      // two equal subviews, whose copy onto itself canonicalize then
      // removes (it would otherwise become a memrefCopy runtime call).
      "cse,canonicalize,"
      // Dynamic sizes that linalg operands share are compared before use.
      "sparsek-check-linalg-sizes,",
      decomposition);
}

/// sparsek-tile-decode-attention's math for `kernel`; empty for the loops.
inline llvm::StringRef decodeMath(DecodeKernel kernel) {
  switch (kernel) {
  case DecodeKernel::Tiles:
    return "simt";
  case DecodeKernel::TilesMma:
    return "mma";
  case DecodeKernel::Loops:
    break;
  }
  return "";
}

/// The tile-first stages both pipelines run after frontStages, each ending in
/// a comma: sparsek-tile-select-attention in `form` where the forward or the
/// backward goes tile first (the backward with `vectorAtomics`: dkey and
/// dvalue added in column pairs), then sparsek-tile-decode-attention in
/// `decodeForm` with `decodeMath` ("simt" or "mma"; empty: decode keeps the
/// loops).
struct TileStages {
  llvm::StringRef form;
  int64_t selectChunk, tileRows, gradTileRows;
  bool forward, grads, vectorAtomics, rowSelection;
  llvm::StringRef decodeForm, decodeMath;

  std::string str() const {
    std::string stages;
    if (forward || grads)
      stages = llvm::formatv("sparsek-tile-select-attention{{form={0} "
                             "select-chunk={1} tile-rows={2} forward={3} "
                             "grads={4} grad-tile-rows={5} "
                             "vector-atomics={6} row-selection={7}},",
                             form, selectChunk, tileRows, forward, grads,
                             gradTileRows, vectorAtomics, rowSelection)
                   .str();
    if (!decodeMath.empty())
      stages +=
          llvm::formatv("sparsek-tile-decode-attention{{form={0} math={1}},",
                        decodeForm, decodeMath)
              .str();
    return stages;
  }
};

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_PIPELINES_FRONTSTAGES_H
