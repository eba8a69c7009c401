//===- GPUHostAllocs.h - Stream ops of host code ----------------*- C++ -*-===//
//
// How sparsek-gpu-host-allocs emits a stream op on the host, shared with
// sparsek-gpu-scratch-arena, which rewrites what it emitted.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_CONVERSION_GPUHOSTALLOCS_GPUHOSTALLOCS_H
#define SPARSEK_CONVERSION_GPUHOSTALLOCS_GPUHOSTALLOCS_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/Builders.h"

namespace mlir::sparsek {

/// `gpu.wait async` -> `build(token, start)` -> `gpu.wait [its token]`: one
/// op on the current stream (the caller's stream under
/// sparsek-entry-points{gpu}), finished before host code goes on, as the
/// synchronous launches around it are. Returns the op `build` created.
template <typename Build>
Operation *emitOnStreamAndWait(OpBuilder &b, Location loc, Build build) {
  Type token = b.getType<gpu::AsyncTokenType>();
  Value start =
      gpu::WaitOp::create(b, loc, token, ValueRange{}).getAsyncToken();
  Operation *op = build(token, start);
  gpu::WaitOp::create(b, loc, Type(), ValueRange{op->getResults().back()});
  return op;
}

} // namespace mlir::sparsek

#endif // SPARSEK_CONVERSION_GPUHOSTALLOCS_GPUHOSTALLOCS_H
