/* capi-consumer.c - A C program outside this tree that uses the sparsek
 * dialect through the MLIR C API of the installed package
 * (SparseK::SparseKCAPI): registers it in a plain context, parses an op,
 * decomposes it with a pass created from C and checks the result. */
#include "mlir-c/Dialect/Func.h"
#include "mlir-c/IR.h"
#include "mlir-c/Pass.h"
#include "sparsek-c/SparseK.h"

#include <stdio.h>
#include <string.h>

static const char *kModule =
    "func.func @layer(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>,\n"
    "                 %v: tensor<1x2x?x16xf32>, %u: tensor<1x2x?xf32>,\n"
    "                 %o: tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32> {\n"
    "  %r = sparsek.select_attention ins(%q, %k, %v, %u : "
    "tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32>, "
    "tensor<1x2x?xf32>) k = 8 w = 4 outs(%o : tensor<1x4x?x16xf32>) -> "
    "tensor<1x4x?x16xf32>\n"
    "  return %r : tensor<1x4x?x16xf32>\n"
    "}\n";

static void collect(MlirStringRef piece, void *userData) {
  strncat((char *)userData, piece.data, piece.length);
}

int main(void) {
  MlirContext ctx = mlirContextCreate();
  mlirDialectHandleRegisterDialect(mlirGetDialectHandle__func__(), ctx);
  mlirDialectHandleRegisterDialect(mlirGetDialectHandle__sparsek__(), ctx);
  MlirModule module =
      mlirModuleCreateParse(ctx, mlirStringRefCreateFromCString(kModule));
  if (mlirModuleIsNull(module)) {
    printf("capi-consumer: parse failed\n");
    return 1;
  }
  MlirPassManager pm = mlirPassManagerCreate(ctx);
  mlirPassManagerAddOwnedPass(
      pm, mlirCreateSparseKSparseKDecomposeSelectAttention());
  int ok = mlirLogicalResultIsSuccess(
      mlirPassManagerRunOnOp(pm, mlirModuleGetOperation(module)));
  static char text[1 << 16];
  mlirOperationPrint(mlirModuleGetOperation(module), collect, text);
  ok = ok && strstr(text, "sparsek.select ") &&
       strstr(text, "sparsek.attention");
  printf("%scapi-consumer: %s\n", text, ok ? "OK" : "decomposition missing");
  mlirPassManagerDestroy(pm);
  mlirModuleDestroy(module);
  mlirContextDestroy(ctx);
  return ok ? 0 : 1;
}
