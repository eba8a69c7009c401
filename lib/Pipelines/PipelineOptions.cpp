//===- PipelineOptions.cpp - Validation of the pipelines' options ---------===//
//
// One check per option, run before a pipeline is built, whoever builds it
// (sparsek-opt, the compiler C API, sparsek-compile, Python, embedding
// compilers). Upstream passes take our option values verbatim, and some
// crash on bad ones (an empty chip segfaults the NVVM target check) or
// report an error without failing (an unknown binary format), so a value is
// checked here against what it may be, not left to them.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Pipelines/Pipelines.h"

#include "Registration.h"

#include "mlir/Target/LLVM/NVVM/Utils.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/TargetParser/Triple.h"

#include <algorithm>
#include <memory>

using namespace mlir;

namespace {

/// Collects what is wrong with a pipeline's options, one message each.
class OptionChecker {
public:
  OptionChecker(llvm::StringRef pipeline, sparsek::OptionErrorHandler report)
      : pipeline(pipeline), report(report) {}

  /// `value` must satisfy `valid`; `expected` says what it may be.
  template <typename T>
  void require(llvm::StringRef option, const T &value, bool valid,
               const llvm::Twine &expected) {
    if (valid)
      return;
    std::string shown;
    llvm::raw_string_ostream os(shown);
    os << value;
    fail(option, expected, shown);
  }

  void inRange(llvm::StringRef option, int64_t value, int64_t lo, int64_t hi,
               llvm::StringRef why = "") {
    require(option, value, lo <= value && value <= hi,
            "in [" + llvm::Twine(lo) + ", " + llvm::Twine(hi) + "]" +
                (why.empty() ? "" : " (" + why + ")"));
  }

  void atLeast(llvm::StringRef option, int64_t value, int64_t lo,
               llvm::StringRef why) {
    require(option, value, value >= lo,
            ">= " + llvm::Twine(lo) + " (" + why + ")");
  }

  void oneOf(llvm::StringRef option, int64_t value,
             llvm::ArrayRef<int64_t> allowed) {
    require(option, value, llvm::is_contained(allowed, value),
            "one of " + join(allowed));
  }

  void oneOf(llvm::StringRef option, llvm::StringRef value,
             llvm::ArrayRef<llvm::StringRef> allowed) {
    require(option, "'" + value.str() + "'", llvm::is_contained(allowed, value),
            "one of " + join(allowed));
  }

  void fail(llvm::StringRef option, const llvm::Twine &expected,
            llvm::StringRef got) {
    failed = true;
    if (report)
      report(pipeline + ": option " + option + " must be " + expected +
             ", got " + got);
  }

  LogicalResult result() const { return failure(failed); }

private:
  template <typename T> static std::string join(llvm::ArrayRef<T> values) {
    std::string text;
    llvm::raw_string_ostream os(text);
    llvm::interleaveComma(values, os);
    return text;
  }

  llvm::StringRef pipeline;
  sparsek::OptionErrorHandler report;
  bool failed = false;
};

/// The NVPTX backend's processor and feature tables, or null when LLVM was
/// built without it (the GPU pipeline then fails in gpu-module-to-binary).
const llvm::MCSubtargetInfo *nvptxInfo() {
  static const std::unique_ptr<llvm::MCSubtargetInfo> info = [] {
    NVVM::SerializeGPUModuleBase::init(); // registers the NVPTX backend
    llvm::Triple triple("nvptx64-nvidia-cuda");
    std::string error;
    const llvm::Target *target =
        llvm::TargetRegistry::lookupTarget(triple, error);
    return std::unique_ptr<llvm::MCSubtargetInfo>(
        target ? target->createMCSubtargetInfo(triple, "", "") : nullptr);
  }();
  return info.get();
}

/// An architecture the NVPTX backend knows (sm_90, sm_90a, ...).
void checkChip(OptionChecker &check, llvm::StringRef chip) {
  const llvm::MCSubtargetInfo *info = nvptxInfo();
  bool valid = info ? info->isCPUStringValid(chip)
                    : chip.starts_with("sm_") && chip.size() > 3;
  check.require("chip", "'" + chip.str() + "'", valid,
                "an NVPTX architecture such as sm_90 or sm_90a");
}

/// A comma-separated list of +feature / -feature (PTX versions such as
/// +ptx80) that the NVPTX backend knows; LLVM would ignore an unknown one
/// with a warning, and compile something other than was asked.
void checkFeatures(OptionChecker &check, llvm::StringRef features) {
  if (features.empty())
    return;
  const llvm::MCSubtargetInfo *info = nvptxInfo();
  llvm::SmallVector<llvm::StringRef> items;
  features.split(items, ',');
  for (llvm::StringRef item : items) {
    llvm::StringRef name = item;
    if (!name.consume_front("+"))
      name.consume_front("-");
    bool valid =
        !name.empty() &&
        (!info || llvm::any_of(info->getAllProcessorFeatures(),
                               [&](const llvm::SubtargetFeatureKV &kv) {
                                 return name == kv.Key;
                               }));
    check.require("features", "'" + item.str() + "'", valid,
                  "a comma-separated list of NVPTX features such as +ptx80 "
                  "(one item is unknown)");
  }
}

} // namespace

LogicalResult
sparsek::verifyPipelineOptions(const SparseKCPUPipelineOptions &options,
                               OptionErrorHandler report) {
  OptionChecker check("sparsek-cpu-pipeline", report);
  check.oneOf("index-bitwidth", options.indexBitwidth, {32, 64});
  check.atLeast("select-chunk", options.selectChunk, 0, "0 picks one");
  check.oneOf("tile-rows", options.tileRows, {0, 64, 128});
  check.oneOf("grad-tile-rows", options.gradTileRows, {0, 64, 128});
  return check.result();
}

sparsek::PrefillKernel
sparsek::resolvedPrefillKernel(const SparseKGPUPipelineOptions &options) {
  if (options.prefillKernel != PrefillKernel::Auto)
    return options.prefillKernel;
  // wgmma's tiles beat mma.sync's where they run (H100, P1 at 32k: 6.3 vs
  // 10.6 ms) and cover the same ops; sm_90a code runs on sm_90 devices alone,
  // so a plain sm_90 binary (whose PTX later GPUs compile) keeps mma.sync.
  return std::string(options.chip) == "sm_90a" ? PrefillKernel::Wgmma
                                               : PrefillKernel::MmaSync;
}

/// The number after `prefix` at the start of `s` (0 when there is none).
static unsigned leadingNumber(llvm::StringRef s, llvm::StringRef prefix) {
  unsigned n = 0;
  if (!s.consume_front(prefix) || s.consumeInteger(10, n))
    return 0;
  return n;
}

bool sparsek::chipAtLeast(const SparseKGPUPipelineOptions &options,
                          unsigned version) {
  return leadingNumber(options.chip, "sm_") >= version;
}

unsigned sparsek::featuresPtxVersion(const SparseKGPUPipelineOptions &options) {
  unsigned ptx = 0;
  llvm::SmallVector<llvm::StringRef> items;
  llvm::StringRef(options.features).split(items, ',');
  for (llvm::StringRef item : items)
    ptx = std::max(ptx, leadingNumber(item.trim(), "+ptx"));
  return ptx;
}

LogicalResult
sparsek::verifyPipelineOptions(const SparseKGPUPipelineOptions &options,
                               OptionErrorHandler report) {
  OptionChecker check("sparsek-gpu-pipeline", report);
  check.oneOf("index-bitwidth", options.indexBitwidth, {32, 64});
  check.inRange("query-block", options.queryBlock, 1, kMaxGPUBlockThreads,
                "one thread per query, and a GPU block has at most 1024 "
                "threads");
  check.atLeast("select-chunk", options.selectChunk, 0, "0 picks one");
  checkChip(check, options.chip);
  // wgmma exists on sm_90a alone (its PTX does not run elsewhere, and the
  // NVVM ops verify the target).
  if (options.prefillKernel == PrefillKernel::Wgmma)
    check.require("chip", "'" + std::string(options.chip) + "'",
                  options.chip == "sm_90a",
                  "sm_90a with prefill-kernel=wgmma (Hopper wgmma "
                  "instructions)");
  check.oneOf("tile-rows", options.tileRows, {0, 64, 128});
  check.oneOf("grad-tile-rows", options.gradTileRows, {0, 64, 128});
  // Only wgmma's tiles come in two warpgroups.
  if (resolvedPrefillKernel(options) != PrefillKernel::Wgmma)
    check.require("tile-rows", static_cast<int64_t>(options.tileRows),
                  options.tileRows != 128,
                  "0 or 64 unless prefill-kernel is wgmma (or auto on "
                  "sm_90a): only wgmma tiles come in two warpgroups");
  checkFeatures(check, options.features);
  check.oneOf("format", std::string(options.format), {"fatbin", "bin", "isa"});
  check.inRange("opt-level", options.optLevel, 0, 3);
  return check.result();
}

void sparsek::reportOptionErrorToStderr(const llvm::Twine &message) {
  llvm::errs() << message << "\n";
}
