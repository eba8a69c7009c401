//===- LowerSelectAttentionGrad.cpp - sparsek.select_attention_grad -------===//
//
// The composite's backward as its three parts on buffers: the selection is
// recomputed from the scores into scratch (sparsek.select: bit for bit the
// forward's sets, see the op's documentation), then sparsek.attention_grad
// gives dq, dkey, dvalue and the gate gradients, and sparsek.select_grad
// turns those into score gradients. Each part is lowered by its own
// lowering, so the composite adds no loop nest of its own.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/SparseKToLoops/SparseKToLoops.h"

#include "LoopUtils.h"
#include "ParallelKeyGrad.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::sparsek;

LogicalResult mlir::sparsek::lowerSelectAttentionGradToLoops(
    RewriterBase &rewriter, SelectAttentionGradOp op,
    const LoopLoweringOptions &options) {
  Location loc = op.getLoc();
  int64_t k = op.getKAttr().getInt();
  Value u = op.getScores(), key = op.getKey();
  // The parts check their own operands; only the scores' agreement with
  // the keys is checked nowhere else.
  Value ok = emitCheck(
      rewriter, loc, op,
      emitDimsAllEqual(rewriter, loc,
                       {{key, 0, u, 0}, {key, 1, u, 1}, {key, 2, u, 2}}),
      SPARSEK_ERROR_SHAPE_MISMATCH);
  auto guard = scf::IfOp::create(rewriter, loc, ok, /*withElseRegion=*/false);
  rewriter.setInsertionPoint(guard.thenBlock()->getTerminator());
  Value batch = emitDim(rewriter, loc, u, 0),
        heads = emitDim(rewriter, loc, u, 1),
        queries = emitDim(rewriter, loc, op.getQuery(), 2);
  auto scratch = [&](ArrayRef<int64_t> shape, Type elem, ValueRange dyn) {
    return memref::AllocOp::create(rewriter, loc, MemRefType::get(shape, elem),
                                   dyn)
        .getResult();
  };
  int64_t dynamic = ShapedType::kDynamic;
  SmallVector<Value> sizes{batch, heads, queries};
  Value indices =
      scratch({dynamic, dynamic, dynamic, k}, rewriter.getI64Type(), sizes);
  Value gates =
      scratch({dynamic, dynamic, dynamic, k}, rewriter.getF32Type(), sizes);
  Value tau =
      scratch({dynamic, dynamic, dynamic}, rewriter.getF32Type(), sizes);
  Value gradGates =
      scratch({dynamic, dynamic, dynamic, k}, rewriter.getF32Type(), sizes);

  auto select = SelectOp::create(rewriter, loc, TypeRange{}, u, op.getKAttr(),
                                 op.getWAttr(), indices, gates, tau);
  auto attention = AttentionGradOp::create(
      rewriter, loc, TypeRange{}, op.getQuery(), op.getKey(), op.getValue(),
      indices, gates, op.getGradOutput(), op.getWAttr(), op.getScaleAttr(),
      op.getGradQueryInit(), op.getGradKeyInit(), op.getGradValueInit(),
      gradGates);
  auto selectGrad =
      SelectGradOp::create(rewriter, loc, TypeRange{}, u, indices, tau,
                           gradGates, op.getWAttr(), op.getGradScoresInit());
  // Each part in the form asked for: serial loops (the CPU reference), or
  // the parallel kernels (the chunked selection, whose sets and thresholds
  // are the serial ones).
  rewriter.setInsertionPoint(select);
  if (failed(lowerSelectToLoops(rewriter, select, options)))
    return failure();
  rewriter.setInsertionPoint(attention);
  if (failed(lowerSelectedAttentionGradToLoops(rewriter, attention, options)))
    return failure();
  rewriter.setInsertionPoint(selectGrad);
  if (failed(lowerSelectGradToLoops(rewriter, selectGrad, options)))
    return failure();
  rewriter.setInsertionPoint(guard.thenBlock()->getTerminator());
  for (Value buf : {indices, gates, tau, gradGates})
    memref::DeallocOp::create(rewriter, loc, buf);
  rewriter.eraseOp(op);
  return success();
}
