//===- BufferizableOpInterfaceImpl.cpp - One-shot bufferization of sparsek -===//
//
// Every sparsek op bufferizes in place into its destinations, like a linalg
// op: the tensor form becomes the same op on memrefs with no results. The
// destinations are overwritten completely and never read, so one-shot
// bufferization need not copy their old contents.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Dialect/SparseK/Transforms/BufferizableOpInterfaceImpl.h"

#include "mlir/Dialect/Bufferization/IR/BufferizableOpInterface.h"
#include "mlir/Dialect/Bufferization/IR/DstBufferizableOpInterfaceImpl.h"
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

using namespace mlir;
using namespace mlir::bufferization;
using namespace mlir::sparsek;

namespace {
template <typename OpTy>
struct SparseKOpInterface
    : DstBufferizableOpInterfaceExternalModel<SparseKOpInterface<OpTy>, OpTy> {
  bool bufferizesToMemoryRead(Operation *op, OpOperand &operand,
                              const AnalysisState &state) const {
    return !cast<DestinationStyleOpInterface>(op).isDpsInit(&operand);
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto dps = cast<DestinationStyleOpInterface>(op);
    if (dps.hasPureBufferSemantics())
      return success();
    SmallVector<Value> operands;
    for (Value v : op->getOperands()) {
      if (!isa<TensorType>(v.getType())) {
        operands.push_back(v);
        continue;
      }
      FailureOr<Value> buffer = getBuffer(rewriter, v, options, state);
      if (failed(buffer))
        return failure();
      operands.push_back(*buffer);
    }
    rewriter.setInsertionPoint(op);
    Operation *bufferOp = Operation::create(
        op->getLoc(), op->getName(), /*resultTypes=*/TypeRange{}, operands,
        NamedAttrList(op->getDiscardableAttrDictionary()),
        op->getPropertiesStorage(), /*successors=*/{}, /*numRegions=*/0);
    rewriter.insert(bufferOp);
    SmallVector<Value> results;
    for (OpOperand &init : dps.getDpsInitsMutable())
      results.push_back(operands[init.getOperandNumber()]);
    replaceOpWithBufferizedValues(rewriter, op, results);
    return success();
  }
};

template <typename... Ops>
void attachAll(MLIRContext *ctx) {
  (Ops::template attachInterface<SparseKOpInterface<Ops>>(*ctx), ...);
}
} // namespace

void mlir::sparsek::registerBufferizableOpInterfaceExternalModels(
    DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, SparseKDialect *) {
    attachAll<ScoreOp, MaskOp, SelectOp, AttentionOp, SelectAttentionOp,
              DecodeAttentionOp, AttentionGradOp, SelectGradOp,
              SelectAttentionGradOp, ScoreGradOp, MaskGradOp>(ctx);
  });
}
