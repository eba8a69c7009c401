//===- DropReturnedArguments.cpp - Destination-passing entry points -------===//
//
// Upstream's dropEquivalentBufferResults skips public functions, to keep
// their ABI; for SparseK entry points the destination-passing ABI is the one
// callers want, so public functions are treated as private for its duration.
// It recognizes a returned argument only as the argument itself, so loops
// and ifs that hand the argument buffer through (a destination written in a
// loop, such as a batch of variable-length sequences) are folded first.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Dialect/SparseK/Transforms/Passes.h"

#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKDROPRETURNEDARGUMENTS
#include "sparsek/Dialect/SparseK/Transforms/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;

namespace {
struct SparseKDropReturnedArgumentsPass
    : mlir::sparsek::impl::SparseKDropReturnedArgumentsBase<
          SparseKDropReturnedArgumentsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // scf.for/scf.if results that are their init/yielded argument buffer
    // become that buffer.
    RewritePatternSet patterns(&getContext());
    scf::ForOp::getCanonicalizationPatterns(patterns, &getContext());
    scf::IfOp::getCanonicalizationPatterns(patterns, &getContext());
    if (failed(applyPatternsGreedily(module, std::move(patterns))))
      return signalPassFailure();
    SmallVector<func::FuncOp> publicFuncs;
    for (auto f : module.getOps<func::FuncOp>())
      if (f.isPublic() && !f.isExternal())
        publicFuncs.push_back(f);
    for (auto f : publicFuncs)
      f.setPrivate();
    LogicalResult result = bufferization::dropEquivalentBufferResults(module);
    for (auto f : publicFuncs)
      f.setPublic();
    if (failed(result))
      signalPassFailure();
  }
};
} // namespace
