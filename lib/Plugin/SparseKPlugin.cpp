//===- SparseKPlugin.cpp - sparsek for stock mlir-opt (dialect/pass plugin)
//===//
//
// One shared object that is both an MLIR dialect plugin and a pass plugin:
//
//   mlir-opt --load-dialect-plugin=SparseKPlugin.so \
//            --load-pass-plugin=SparseKPlugin.so \
//            -p 'builtin.module(sparsek-cpu-pipeline)' in.mlir
//
// Both entry points live in one library on purpose: the TypeIDs of the
// dialect, its ops and our passes are defined in our static libraries, so a
// dialect plugin and a pass plugin built as two objects would each carry a
// copy, and the passes of one would not recognize the ops parsed by the
// other. Loading the same file twice maps it once.
//
//===----------------------------------------------------------------------===//
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Tools/Plugins/DialectPlugin.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "sparsek/InitAllSparseK.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

/// Whether this library registered the passes (or the dialect) in this
/// process: a tool may load the plugin once per flag.
static bool passesRegisteredHere = false;
static bool dialectRegisteredHere = false;
/// Present in the pass registry when any copy of our passes is.
static constexpr const char *kCPUPipeline = "sparsek-cpu-pipeline";

/// Registers our passes and pipelines unless they are already there. Our
/// registrations differ from those of another copy (a tool that links the
/// dialect, such as sparsek-opt, or a second copy of this file): registering
/// a pass name twice with another TypeID is a fatal error in MLIR, and a
/// pipeline name twice one in assertion-enabled builds. A tool's own
/// registration then wins, with its own dialect.
static void registerSparseKPassesOnce() {
  if (passesRegisteredHere || PassPipelineInfo::lookup(kCPUPipeline) != nullptr)
    return;
  sparsek::setDefaultCudaToolkitPath();
  sparsek::registerAllSparseKPasses();
  passesRegisteredHere = true;
}

/// The dialect plugin registers the passes as well, so loading it alone is
/// enough to parse, verify and lower sparsek IR.
static void registerSparseKDialectPlugin(DialectRegistry *registry) {
  StringRef name = sparsek::SparseKDialect::getDialectNamespace();
  if (!dialectRegisteredHere && registry->getDialectAllocator(name))
    return; // The tool has the dialect, and the passes that match it.
  if (!passesRegisteredHere && PassPipelineInfo::lookup(kCPUPipeline)) {
    // Passes of another copy would not know the ops of this one's dialect.
    llvm::errs() << "SparseK plugin: the sparsek passes come from another "
                    "library; load the dialect plugin from that same file\n";
    return;
  }
  sparsek::registerAllSparseKDialects(*registry);
  dialectRegisteredHere = true;
  registerSparseKPassesOnce();
}

extern "C" LLVM_ATTRIBUTE_WEAK
    LLVM_ATTRIBUTE_VISIBILITY_DEFAULT DialectPluginLibraryInfo
    mlirGetDialectPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "SparseK", LLVM_VERSION_STRING,
          registerSparseKDialectPlugin};
}

extern "C" LLVM_ATTRIBUTE_WEAK
    LLVM_ATTRIBUTE_VISIBILITY_DEFAULT PassPluginLibraryInfo
    mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "SparseKPasses", LLVM_VERSION_STRING,
          registerSparseKPassesOnce};
}
