//===- Manifest.h - The argument manifest entry points export ---*- C++ -*-===//
//
// A caller that binds entry points at run time (python/sparsek over ctypes)
// must not guess their C signatures: a wrong rank or element type is read
// as memory. `sparsek-entry-points` therefore exports
// `const char *sparsek_manifest(void)`, a JSON text that describes every
// entry point's arguments: kind, element type, sizes (null where dynamic)
// and whether the function may write the buffer.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CONVERSION_ENTRYPOINTS_MANIFEST_H
#define SPARSEK_LIB_CONVERSION_ENTRYPOINTS_MANIFEST_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::sparsek {

/// Name of the exported manifest function.
inline constexpr llvm::StringLiteral kManifestFunction = "sparsek_manifest";

/// Version of the manifest's layout; readers refuse versions they do not
/// know.
inline constexpr int64_t kManifestVersion = 1;

/// A function that got an entry point, and that entry point's name.
struct EntryPointRecord {
  func::FuncOp function;
  std::string entry;
};

/// Whether `f` may write through its buffer argument `index`: false only
/// when every use, through views, casts and calls, is known to only read.
bool mayWriteArgument(func::FuncOp f, unsigned index);

/// Adds `sparsek_manifest()` (and the constant string it returns) to
/// `module`, describing `entries`; `stream` says that entry points take a
/// CUDA stream first. Fails with a diagnostic when the name is taken.
LogicalResult emitManifest(ModuleOp module, ArrayRef<EntryPointRecord> entries,
                           bool stream);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_CONVERSION_ENTRYPOINTS_MANIFEST_H
