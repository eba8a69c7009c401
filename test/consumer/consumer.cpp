//===- consumer.cpp - An out-of-tree user of the SparseK CMake package ----===//
//
// Registers the sparsek dialect and passes in its own context, parses a
// composite attention op, decomposes it with the installed pass and prints
// the result: what an ML compiler integrating the dialect does.
//
//===----------------------------------------------------------------------===//
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"
#include "sparsek/Dialect/SparseK/Transforms/Passes.h"
#include "llvm/Support/raw_ostream.h"

static const char *kModule = R"mlir(
func.func @layer(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>,
                 %v: tensor<1x2x?x16xf32>, %u: tensor<1x2x?xf32>,
                 %o: tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32> {
  %r = sparsek.select_attention ins(%q, %k, %v, %u : tensor<1x4x?x16xf32>,
         tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?xf32>)
       k = 8 w = 4 outs(%o : tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32>
  return %r : tensor<1x4x?x16xf32>
}
)mlir";

int main() {
  mlir::MLIRContext context;
  context.loadDialect<mlir::func::FuncDialect, mlir::sparsek::SparseKDialect>();
  auto module = mlir::parseSourceString<mlir::ModuleOp>(kModule, &context);
  if (!module)
    return 1;
  mlir::PassManager pm(&context);
  pm.addPass(mlir::sparsek::createSparseKDecomposeSelectAttention());
  if (mlir::failed(pm.run(*module)))
    return 1;
  bool hasSelect = false;
  module->walk([&](mlir::sparsek::SelectOp) { hasSelect = true; });
  module->print(llvm::outs());
  llvm::outs() << (hasSelect ? "consumer: OK\n" : "consumer: decomposition missing\n");
  return hasSelect ? 0 : 1;
}
