//===- GPUHostAllocs.cpp - The sparsek-gpu-host-allocs pass ---------------===//
//
// Host buffers that kernels use become device buffers (gpu.alloc), and host
// copies between device buffers become gpu.memcpy. Upstream has no pass for
// this: gpu-to-llvm lowers host memref.alloc to malloc and memref.copy to a
// host memcpy, both wrong for device memory, and gpu.host_register would
// keep the data in host memory, read by kernels over PCIe.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/GPUHostAllocs/GPUHostAllocs.h"
#include "sparsek/Conversion/Passes.h"

#include "mlir/Interfaces/ViewLikeInterface.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKGPUHOSTALLOCS
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// How host code uses one buffer (and the views of it).
struct BufferUses {
  bool byKernel = false; // a launch operand, or used inside a gpu.launch
  Operation *hostAccess = nullptr; // a host op that touches the elements
};
} // namespace

/// The buffer a view was taken of (through any chain of views).
static Value rootBuffer(Value v) {
  while (auto view = v.getDefiningOp<ViewLikeOpInterface>())
    v = view.getViewSource();
  return v;
}

static bool insideDeviceCode(Operation *op) {
  return op->getParentOfType<gpu::LaunchOp>() ||
         op->getParentOfType<gpu::GPUModuleOp>();
}

/// Classifies the users of `buffer` and, transitively, of its views.
static void collectUses(Value buffer, BufferUses &uses) {
  for (OpOperand &use : buffer.getUses()) {
    Operation *user = use.getOwner();
    if (isa<gpu::LaunchFuncOp>(user) || insideDeviceCode(user)) {
      uses.byKernel = true;
      continue;
    }
    if (auto view = dyn_cast<ViewLikeOpInterface>(user);
        view && view.getViewSource() == buffer) {
      for (Value result : user->getResults())
        collectUses(result, uses);
      continue;
    }
    // Choosing between buffers (a scan's ping-pong) reads none of them.
    if (isa<arith::SelectOp>(user) && use.getOperandNumber() != 0) {
      collectUses(user->getResult(0), uses);
      continue;
    }
    // A device-to-device copy (rewritten below) counts as device use; sizes,
    // deallocation, passing the buffer on to generated functions and reading
    // its descriptor (alignment checks) read no element on the host.
    if (isa<memref::CopyOp>(user)) {
      uses.byKernel = true;
      continue;
    }
    if (isa<memref::DimOp, memref::DeallocOp, func::CallOp, func::ReturnOp,
            memref::ExtractAlignedPointerAsIndexOp,
            memref::ExtractStridedMetadataOp>(user))
      continue;
    if (!uses.hostAccess)
      uses.hostAccess = user;
  }
}

namespace {
struct SparseKGPUHostAllocsPass
    : mlir::sparsek::impl::SparseKGPUHostAllocsBase<SparseKGPUHostAllocsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<memref::AllocOp> allocs;
    SmallVector<memref::CopyOp> copies;
    module.walk<WalkOrder::PreOrder>([&](Operation *op) {
      if (isa<gpu::GPUModuleOp, gpu::LaunchOp>(op))
        return WalkResult::skip();
      if (auto alloc = dyn_cast<memref::AllocOp>(op))
        allocs.push_back(alloc);
      else if (auto copy = dyn_cast<memref::CopyOp>(op))
        copies.push_back(copy);
      return WalkResult::advance();
    });

    DenseSet<Value> device;
    for (memref::AllocOp alloc : allocs) {
      BufferUses uses;
      collectUses(alloc.getResult(), uses);
      if (!uses.byKernel)
        continue;
      if (uses.hostAccess) {
        InFlightDiagnostic diag =
            alloc.emitError("sparsek-gpu-host-allocs: a buffer that GPU "
                            "kernels use is also accessed by host code");
        diag.attachNote(uses.hostAccess->getLoc()) << "host access here";
        return signalPassFailure();
      }
      device.insert(moveToDevice(alloc));
    }

    for (memref::CopyOp copy : copies) {
      // Entry points and generated functions take device buffers.
      auto onDevice = [&](Value v) {
        Value root = rootBuffer(v);
        return device.contains(root) || isa<BlockArgument>(root);
      };
      if (!onDevice(copy.getSource()) || !onDevice(copy.getTarget()))
        continue;
      for (Value v : {copy.getSource(), copy.getTarget()}) {
        auto type = cast<MemRefType>(v.getType());
        if (!type.getLayout().isIdentity()) {
          copy.emitError("sparsek-gpu-host-allocs: a copy between device "
                         "buffers needs identity layouts, got ")
              << type;
          return signalPassFailure();
        }
      }
      OpBuilder b(copy);
      emitOnStreamAndWait(b, copy.getLoc(), [&](Type token, Value start) {
        return gpu::MemcpyOp::create(b, copy.getLoc(), token, start,
                                     copy.getTarget(), copy.getSource());
      });
      copy.erase();
    }
  }

  /// Replaces `alloc` and its deallocations; returns the new buffer.
  Value moveToDevice(memref::AllocOp alloc) {
    OpBuilder b(alloc);
    Location loc = alloc.getLoc();
    auto deviceAlloc = cast<gpu::AllocOp>(
        emitOnStreamAndWait(b, loc, [&](Type token, Value start) {
          return gpu::AllocOp::create(b, loc, alloc.getType(), token, start,
                                      alloc.getDynamicSizes(),
                                      alloc.getSymbolOperands(),
                                      /*hostShared=*/nullptr);
        }));
    Value buffer = deviceAlloc.getMemref();
    alloc.replaceAllUsesWith(buffer);
    alloc.erase();
    SmallVector<memref::DeallocOp> deallocs;
    for (Operation *user : buffer.getUsers())
      if (auto dealloc = dyn_cast<memref::DeallocOp>(user))
        deallocs.push_back(dealloc);
    for (memref::DeallocOp dealloc : deallocs) {
      b.setInsertionPoint(dealloc);
      emitOnStreamAndWait(b, dealloc.getLoc(), [&](Type token, Value start) {
        return gpu::DeallocOp::create(b, dealloc.getLoc(), token, start,
                                      buffer);
      });
      dealloc.erase();
    }
    return buffer;
  }
};
} // namespace
