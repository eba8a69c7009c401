//===- Isolation.h - One compilation in a child process ---------*- C++ -*-===//
//
// Upstream MLIR/LLVM code ends the process on some inputs: parser crashes
// (a malformed linalg.transpose permutation segfaults), `LLVM ERROR`s that
// exit (a PTX version too old for the chip), failed assertions. Inside a
// caller such as a Python interpreter that would take the caller down, so
// every C API call compiles in a forked child and hands back its result or
// a message saying how it died.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_CAPI_ISOLATION_H
#define SPARSEK_LIB_CAPI_ISOLATION_H

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"

#include <string>

namespace mlir::sparsek::capi {

/// What one C API call produced: on success `text` (possibly empty), else
/// `error`.
struct Outcome {
  bool ok = false;
  std::string text;
  std::string error;
};

/// Runs `work` in a forked child and returns its Outcome. A child that
/// crashes or exits early gives an error holding its stderr (the upstream
/// message); on success its stderr (warnings) is copied to ours. With
/// SPARSEK_COMPILER_IN_PROCESS=1 in the environment (debuggers, profilers),
/// `work` runs in this process instead.
Outcome runIsolated(llvm::function_ref<Outcome()> work);

/// In the child, appends a diagnostic to a journal that the parent reads
/// if the child dies (a parse error printed just before an upstream crash
/// then still reaches the caller); elsewhere does nothing.
void journalDiagnostic(llvm::StringRef text);

} // namespace mlir::sparsek::capi

#endif // SPARSEK_LIB_CAPI_ISOLATION_H
