//===- Status.h - Run-time error status of lowered sparsek code -*- C++ -*-===//
//
// Lowered code reports bad input (NaN scores, disagreeing dynamic sizes)
// through a status word in the module instead of aborting: the first error
// is kept, and the computation it guards is skipped. The codes are those of
// include/sparsek-c/Status.h.
//
// Kernels (the parallel form's loop bodies, and gpu.func kernels) report
// through the *device* status: a word that threads set by compare-and-swap
// (first error wins) plus a mirror that the winning thread copies its code
// into. On the CPU both are module globals (the word is the host status
// word itself, so entry points return kernel errors as they return host
// ones). In the GPU pipeline sparsek-gpu-device-status replaces them with
// the runtime's per-library words: the word in device memory, the mirror in
// pinned host-mapped memory that the host reads without synchronizing.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_CONVERSION_SPARSEKTOLOOPS_STATUS_H
#define SPARSEK_CONVERSION_SPARSEKTOLOOPS_STATUS_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "sparsek-c/Status.h"

namespace mlir::sparsek {

/// Name of the module's status word (a memref.global of memref<i32>).
inline constexpr llvm::StringLiteral kStatusGlobal = "__sparsek_status";

/// Name of the device status mirror (a memref.global of memref<i32>; see
/// DeviceStatus).
inline constexpr llvm::StringLiteral kStatusMirrorGlobal =
    "__sparsek_status_mirror";

/// Creates the status word and the C-callable `sparsek_status()` and
/// `sparsek_clear_status()` functions in `module` unless present.
void ensureStatusSymbols(ModuleOp module);

/// Records `code` in the status word unless an earlier error is recorded.
/// `anchor` locates the enclosing module (which must have the symbols).
void emitSetStatus(OpBuilder &b, Location loc, Operation *anchor,
                   int32_t code);

/// Records `code` when the i1 `ok` is false; returns `ok`, for guarding.
Value emitCheck(OpBuilder &b, Location loc, Operation *anchor, Value ok,
                int32_t code);

/// The device status of kernels: two memref<i32> values of host code (module
/// globals until sparsek-gpu-device-status makes them the runtime's device
/// pointers). Kernels built as scf.parallel bodies or gpu.launch regions may
/// create them in place (emitDeviceCheck does); a gpu.func kernel takes them
/// as two memref<i32> operands of its gpu.launch_func.
struct DeviceStatus {
  Value word;   // first error wins (compare-and-swap)
  Value mirror; // the winner's code, for the host to read
};

/// Host (or pre-outlining kernel) code: the module's device status values,
/// creating the globals in the module of `anchor` if needed.
DeviceStatus getDeviceStatus(OpBuilder &b, Location loc, Operation *anchor);

/// Device code: records `code` in `status` unless an earlier error is
/// recorded there (atomic compare-and-swap), and if this thread's record won,
/// copies the code to the mirror. A null word (the runtime could not
/// allocate one; it reports that itself) is left alone.
void emitDeviceStatus(OpBuilder &b, Location loc, const DeviceStatus &status,
                      int32_t code);

/// Device code: records `code` through emitDeviceStatus when the i1 `ok` is
/// false (the status values are created inside the guarded branch, so the
/// valid path does not touch them); returns `ok`.
Value emitDeviceCheck(OpBuilder &b, Location loc, Operation *anchor, Value ok,
                      int32_t code);

/// i1: dimension `ad` of shaped value `a` equals dimension `bd` of `b`
/// (a constant true when both are static, which the verifier checked).
Value emitDimsEqual(OpBuilder &b, Location loc, Value a, unsigned ad, Value c,
                    unsigned cd);

} // namespace mlir::sparsek

#endif // SPARSEK_CONVERSION_SPARSEKTOLOOPS_STATUS_H
