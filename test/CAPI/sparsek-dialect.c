/* sparsek-dialect.c - the sparsek dialect through the MLIR C API
 * (include/sparsek-c/SparseK.h, libSparseKCAPI.so): registered in a plain
 * context by its handle, a module parsed, verified and walked, a verifier
 * error reported as a diagnostic, a pass run by its C constructor, and the
 * CPU pipeline run by name. Exits non-zero on the first wrong result, so
 * ctest runs it too. */
// RUN: %capi_dialect_test 2>&1 | FileCheck %s

#include "mlir-c/Diagnostics.h"
#include "mlir-c/Dialect/Func.h"
#include "mlir-c/IR.h"
#include "mlir-c/Pass.h"
#include "mlir-c/RegisterEverything.h"
#include "sparsek-c/SparseK.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kLayer =
    "func.func @layer(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>,\n"
    "                 %v: tensor<1x2x?x16xf32>, %u: tensor<1x2x?xf32>,\n"
    "                 %o: tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32> {\n"
    "  %r = sparsek.select_attention ins(%q, %k, %v, %u : "
    "tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32>, "
    "tensor<1x2x?xf32>) k = 8 w = 4 outs(%o : tensor<1x4x?x16xf32>) -> "
    "tensor<1x4x?x16xf32>\n"
    "  return %r : tensor<1x4x?x16xf32>\n"
    "}\n";

/* k = 0 with w = 0 leaves nothing to attend to: the verifier rejects it. */
static const char *kInvalid =
    "func.func @bad(%q: tensor<1x1x4x8xf32>, %u: tensor<1x1x4xf32>) -> "
    "tensor<1x1x4x8xf32> {\n"
    "  %o = sparsek.select_attention ins(%q, %q, %q, %u : "
    "tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>, "
    "tensor<1x1x4xf32>) k = 0 w = 0 outs(%q : tensor<1x1x4x8xf32>) -> "
    "tensor<1x1x4x8xf32>\n"
    "  return %o : tensor<1x1x4x8xf32>\n"
    "}\n";

#define EXPECT(cond)                                                           \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "FAILED at line %d: %s\n", __LINE__, #cond);             \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

/* A growing string that MlirStringCallback appends to. */
typedef struct {
  char *data;
  size_t size;
} Text;

static void appendText(MlirStringRef piece, void *userData) {
  Text *text = (Text *)userData;
  char *grown = realloc(text->data, text->size + piece.length + 1);
  EXPECT(grown != NULL);
  memcpy(grown + text->size, piece.data, piece.length);
  text->data = grown;
  text->size += piece.length;
  text->data[text->size] = '\0';
}

static void printPiece(MlirStringRef piece, void *userData) {
  (void)userData;
  fwrite(piece.data, 1, piece.length, stdout);
}

/* Prints every diagnostic on one line and counts the errors. */
static MlirLogicalResult printDiagnostic(MlirDiagnostic diagnostic,
                                         void *userData) {
  if (mlirDiagnosticGetSeverity(diagnostic) == MlirDiagnosticError)
    ++*(int *)userData;
  printf("diagnostic: ");
  mlirDiagnosticPrint(diagnostic, printPiece, NULL);
  printf("\n");
  return mlirLogicalResultSuccess();
}

static MlirModule parse(MlirContext ctx, const char *text) {
  return mlirModuleCreateParse(ctx, mlirStringRefCreateFromCString(text));
}

/* The operations of the module's first function body, by name. */
static void printBodyOps(MlirModule module) {
  MlirOperation func = mlirBlockGetFirstOperation(mlirModuleGetBody(module));
  MlirBlock body = mlirRegionGetFirstBlock(mlirOperationGetRegion(func, 0));
  printf("ops:");
  for (MlirOperation op = mlirBlockGetFirstOperation(body);
       !mlirOperationIsNull(op); op = mlirOperationGetNextInBlock(op)) {
    MlirStringRef name = mlirIdentifierStr(mlirOperationGetName(op));
    printf(" %.*s", (int)name.length, name.data);
  }
  printf("\n");
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep the output of a crash */
  int errors = 0;
  MlirContext ctx = mlirContextCreate();
  mlirContextAttachDiagnosticHandler(ctx, printDiagnostic, &errors, NULL);

  /* A plain context does not know the dialect. */
  // CHECK: diagnostic: Dialect `sparsek' not found for custom op 'sparsek.
  // CHECK-NEXT: plain context: null module
  mlirDialectHandleRegisterDialect(mlirGetDialectHandle__func__(), ctx);
  MlirModule module = parse(ctx, kLayer);
  EXPECT(mlirModuleIsNull(module) && errors == 1);
  printf("plain context: null module\n");

  // CHECK-LABEL: handle: sparsek
  MlirDialectHandle sparsek = mlirGetDialectHandle__sparsek__();
  MlirStringRef ns = mlirDialectHandleGetNamespace(sparsek);
  printf("handle: %.*s\n", (int)ns.length, ns.data);
  EXPECT(ns.length == 7 && strncmp(ns.data, "sparsek", 7) == 0);
  mlirDialectHandleRegisterDialect(sparsek, ctx);

  // CHECK-LABEL: parsed: verified
  // CHECK-NEXT: ops: sparsek.select_attention func.return
  // CHECK: sparsek.select_attention ins(%arg0, {{.*}}) k = 8 w = 4 outs(%arg4
  module = parse(ctx, kLayer);
  EXPECT(!mlirModuleIsNull(module));
  MlirOperation moduleOp = mlirModuleGetOperation(module);
  EXPECT(mlirOperationVerify(moduleOp));
  printf("parsed: verified\n");
  printBodyOps(module);
  mlirOperationPrint(moduleOp, printPiece, NULL);

  // CHECK: diagnostic: {{.*}}k = 0 with w = 0
  // CHECK-NEXT: invalid: null module
  errors = 0;
  EXPECT(mlirModuleIsNull(parse(ctx, kInvalid)) && errors == 1);
  printf("invalid: null module\n");

  /* A pass by its C constructor: select_attention becomes select followed
   * by attention. */
  // CHECK-LABEL: decomposed: success
  // CHECK-NEXT: ops: {{.*}}sparsek.select {{.*}}sparsek.attention func.return
  mlirRegisterSparseKPasses();
  MlirPassManager pm = mlirPassManagerCreate(ctx);
  mlirPassManagerAddOwnedPass(
      pm, mlirCreateSparseKSparseKDecomposeSelectAttention());
  EXPECT(mlirLogicalResultIsSuccess(mlirPassManagerRunOnOp(pm, moduleOp)));
  printf("decomposed: success\n");
  printBodyOps(module);
  mlirPassManagerDestroy(pm);
  mlirModuleDestroy(module);
  mlirContextDestroy(ctx);

  /* The CPU pipeline by name, in a context with every upstream dialect (the
   * pipeline lowers through them) and the sparsek models it needs. The
   * pipelines come with the passes they name; registering twice is
   * harmless. */
  // CHECK-LABEL: cpu pipeline: success
  // CHECK-NEXT: llvm.func @_mlir_ciface_layer(
  MlirDialectRegistry registry = mlirDialectRegistryCreate();
  mlirRegisterAllDialects(registry);
  mlirSparseKRegisterDialects(registry);
  ctx = mlirContextCreateWithRegistry(registry, /*threadingEnabled=*/false);
  mlirDialectRegistryDestroy(registry);
  errors = 0;
  mlirContextAttachDiagnosticHandler(ctx, printDiagnostic, &errors, NULL);
  mlirRegisterSparseKPipelines();
  mlirRegisterSparseKPipelines();
  module = parse(ctx, kLayer);
  EXPECT(!mlirModuleIsNull(module));
  pm = mlirPassManagerCreate(ctx);
  Text error = {NULL, 0};
  EXPECT(mlirLogicalResultIsSuccess(mlirParsePassPipeline(
      mlirPassManagerGetAsOpPassManager(pm),
      mlirStringRefCreateFromCString("builtin.module(sparsek-cpu-pipeline)"),
      appendText, &error)));
  EXPECT(mlirLogicalResultIsSuccess(
      mlirPassManagerRunOnOp(pm, mlirModuleGetOperation(module))));
  Text lowered = {NULL, 0};
  mlirOperationPrint(mlirModuleGetOperation(module), appendText, &lowered);
  /* Nothing of the dialect is left. */
  EXPECT(strstr(lowered.data, "sparsek.") == NULL);
  const char *wrapper = strstr(lowered.data, "llvm.func @_mlir_ciface_layer(");
  EXPECT(wrapper != NULL);
  printf("cpu pipeline: success\n%.*s\n", (int)strcspn(wrapper, "\n"), wrapper);
  free(lowered.data);

  /* A pipeline that does not exist: an error message, not an abort. */
  // CHECK-LABEL: unknown pipeline: failure
  // CHECK-NEXT: 'sparsek-no-such-pipeline' does not refer to a registered pass
  EXPECT(mlirLogicalResultIsFailure(
      mlirParsePassPipeline(mlirPassManagerGetAsOpPassManager(pm),
                            mlirStringRefCreateFromCString(
                                "builtin.module(sparsek-no-such-pipeline)"),
                            appendText, &error)));
  printf("unknown pipeline: failure\n%s\n", error.data ? error.data : "");
  free(error.data);
  mlirPassManagerDestroy(pm);
  mlirModuleDestroy(module);
  mlirContextDestroy(ctx);

  // CHECK: done
  printf("done\n");
  return 0;
}
