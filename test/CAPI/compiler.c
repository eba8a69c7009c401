/* compiler.c - drives the compiler C API (include/sparsek-c/Compiler.h):
 * pipelines, LLVM IR, a shared library that is loaded and run, and every
 * error path returning a message instead of aborting. */
// RUN: rm -rf %t && mkdir -p %t
// RUN: %capi_test %t 2>&1 | FileCheck %s

#include "sparsek-c/Compiler.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kMask =
    "func.func @mask(%z: tensor<?x?xf32>, %p0: tensor<?x?xf32>, "
    "%t0: tensor<?xf32>) -> (tensor<?x?xf32>, tensor<?xf32>) {\n"
    "  %p, %tau = sparsek.mask ins(%z : tensor<?x?xf32>) k = 2 "
    "outs(%p0, %t0 : tensor<?x?xf32>, tensor<?xf32>) -> tensor<?x?xf32>, "
    "tensor<?xf32>\n"
    "  return %p, %tau : tensor<?x?xf32>, tensor<?xf32>\n"
    "}\n";

/* k = 0 with w = 0 leaves nothing to attend to: the verifier rejects it. */
static const char *kInvalid =
    "func.func @bad(%q: tensor<1x1x4x8xf32>, %u: tensor<1x1x4xf32>, "
    "%o0: tensor<1x1x4x8xf32>) -> tensor<1x1x4x8xf32> {\n"
    "  %o = sparsek.select_attention ins(%q, %q, %q, %u : "
    "tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>, "
    "tensor<1x1x4xf32>) k = 0 w = 0 outs(%o0 : tensor<1x1x4x8xf32>) -> "
    "tensor<1x1x4x8xf32>\n"
    "  return %o : tensor<1x1x4x8xf32>\n"
    "}\n";

static const char *kAttention =
    "func.func @attention(%q: tensor<?x?x?x64xbf16>, %k: "
    "tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>, %i: "
    "tensor<?x?x?x8xi32>, %g: tensor<?x?x?x8xf32>, %o0: "
    "tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xbf16> {\n"
    "  %o = sparsek.attention ins(%q, %k, %v, %i, %g : tensor<?x?x?x64xbf16>, "
    "tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x8xi32>, "
    "tensor<?x?x?x8xf32>) w = 16 outs(%o0 : tensor<?x?x?x64xbf16>) -> "
    "tensor<?x?x?x64xbf16>\n"
    "  return %o : tensor<?x?x?x64xbf16>\n"
    "}\n";

typedef struct {
  float *allocated, *aligned;
  int64_t offset, sizes[2], strides[2];
} MemRef2D;
typedef struct {
  float *allocated, *aligned;
  int64_t offset, sizes[1], strides[1];
} MemRef1D;

/* Prints the first line of `text` that contains `needle`. */
static void printLineWith(const char *text, const char *needle) {
  const char *hit = strstr(text, needle);
  if (!hit) {
    printf("  (no line with '%s')\n", needle);
    return;
  }
  const char *start = hit;
  while (start > text && start[-1] != '\n')
    --start;
  const char *end = strchr(hit, '\n');
  printf("  %.*s\n", (int)(end ? end - start : (long)strlen(start)), start);
}

static void expectFailure(const char *what, int rc, char *error) {
  printf("%s: rc=%d\n%s%s", what, rc, error ? error : "(no message)",
         error && *error && error[strlen(error) - 1] == '\n' ? "" : "\n");
  sparsek_compiler_free(error);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <scratch-dir>\n", argv[0]);
    return 2;
  }
  // CHECK: version: SparseK {{[0-9.]+}} (LLVM 22.
  printf("version: %s\n", sparsek_compiler_version());

  char *text = NULL, *error = NULL;
  // CHECK-LABEL: verify only: rc=0
  // CHECK: sparsek.mask ins(
  int rc = sparsek_compiler_run_pipeline(kMask, "", &text, &error);
  printf("verify only: rc=%d\n", rc);
  printLineWith(text, "sparsek.mask");
  sparsek_compiler_free(text);

  // CHECK-LABEL: cpu pipeline: rc=0
  // CHECK: llvm.func @_mlir_ciface_mask(
  rc = sparsek_compiler_run_pipeline(kMask, "sparsek-cpu-pipeline", &text,
                                     &error);
  printf("cpu pipeline: rc=%d\n", rc);
  printLineWith(text, "@_mlir_ciface_mask");
  sparsek_compiler_free(text);

  // The builtin.module(...) form and pipeline options are accepted too.
  // CHECK-LABEL: llvm ir: rc=0
  // CHECK: define void @_mlir_ciface_mask(ptr
  rc = sparsek_compiler_translate_to_llvm_ir(
      kMask, "builtin.module(sparsek-cpu-pipeline{index-bitwidth=64})", &text,
      &error);
  printf("llvm ir: rc=%d\n", rc);
  printLineWith(text, "@_mlir_ciface_mask(");
  sparsek_compiler_free(text);

  // Compile, load and run: z = [3, 1, 0.5, -2], k = 2 gives tau = 0.25 and
  // p = [1, 0.75, 0.25, 0] (SPEC 3).
  // CHECK-LABEL: shared library: rc=0
  // CHECK: p = 1.0000 0.7500 0.2500 0.0000 tau = 0.2500
  char path[4096];
  snprintf(path, sizeof path, "%s/mask.so", argv[1]);
  rc = sparsek_compiler_compile_shared_library(kMask, "sparsek-cpu-pipeline",
                                               path, 2, &error);
  printf("shared library: rc=%d\n", rc);
  if (rc) {
    printf("%s\n", error);
    return 1;
  }
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  void (*mask)(MemRef2D *, MemRef2D *, MemRef1D *) =
      lib ? (void (*)(MemRef2D *, MemRef2D *, MemRef1D *))dlsym(
                lib, "_mlir_ciface_mask")
          : NULL;
  if (!mask) {
    printf("cannot load %s: %s\n", path, dlerror());
    return 1;
  }
  float z[4] = {3.0f, 1.0f, 0.5f, -2.0f}, p[4] = {0}, tau[1] = {0};
  MemRef2D zd = {z, z, 0, {1, 4}, {4, 1}}, pd = {p, p, 0, {1, 4}, {4, 1}};
  MemRef1D td = {tau, tau, 0, {1}, {1}};
  mask(&zd, &pd, &td);
  printf("p = %.4f %.4f %.4f %.4f tau = %.4f\n", p[0], p[1], p[2], p[3],
         tau[0]);
  dlclose(lib);

  // The GPU pipeline runs through the same registrations as sparsek-opt
  // (PTX only: no ptxas needed).
  // CHECK-LABEL: gpu pipeline: rc=0
  // CHECK: gpu.binary @attention_kernel
  rc = sparsek_compiler_run_pipeline(
      kAttention, "sparsek-gpu-pipeline{format=isa}", &text, &error);
  printf("gpu pipeline: rc=%d\n", rc);
  if (rc)
    printf("%s\n", error);
  else
    printLineWith(text, "gpu.binary");
  sparsek_compiler_free(text);

  // Extra link arguments reach the linker, after the object file.
  // CHECK-LABEL: link args: rc=0
  const char *soname[] = {"-Wl,-soname,libmask.so"};
  rc = sparsek_compiler_compile_shared_library_ex(kMask, "sparsek-cpu-pipeline",
                                                  path, 2, soname, 1, &error);
  printf("link args: rc=%d\n", rc);
  // CHECK-LABEL: missing library: rc=1
  // CHECK-NEXT: linking failed: {{.*}}.o -lsparsek_no_such_lib -lm
  // CHECK: sparsek_no_such_lib
  const char *missing[] = {"-lsparsek_no_such_lib"};
  rc = sparsek_compiler_compile_shared_library_ex(kMask, "sparsek-cpu-pipeline",
                                                  path, 2, missing, 1, &error);
  expectFailure("missing library", rc, error);

  // Errors come back as messages with the diagnostics, never an abort.
  // CHECK-LABEL: parse error: rc=1
  // CHECK: failed to parse or verify the MLIR input:
  // CHECK: input:1:{{[0-9]+}}: error:
  rc = sparsek_compiler_run_pipeline("func.func @f( {", "", &text, &error);
  expectFailure("parse error", rc, error);

  // CHECK-LABEL: verifier error: rc=1
  // CHECK: input:2:{{[0-9]+}}: error: {{.*}}k = 0 with w = 0
  rc = sparsek_compiler_run_pipeline(kInvalid, "", &text, &error);
  expectFailure("verifier error", rc, error);

  // CHECK-LABEL: unknown pass: rc=1
  // CHECK: invalid pass pipeline 'no-such-pass':
  rc = sparsek_compiler_run_pipeline(kMask, "no-such-pass", &text, &error);
  expectFailure("unknown pass", rc, error);

  // CHECK-LABEL: not lowered: rc=1
  // CHECK: translation to LLVM IR failed
  rc = sparsek_compiler_translate_to_llvm_ir(kMask, "canonicalize", &text,
                                             &error);
  expectFailure("not lowered", rc, error);

  // CHECK-LABEL: bad opt level: rc=1
  // CHECK-NEXT: opt_level must be 0..3, got 7
  rc = sparsek_compiler_compile_shared_library(kMask, "sparsek-cpu-pipeline",
                                               path, 7, &error);
  expectFailure("bad opt level", rc, error);

  // CHECK-LABEL: null input: rc=1
  // CHECK-NEXT: no MLIR text given
  rc = sparsek_compiler_run_pipeline(NULL, "", &text, &error);
  expectFailure("null input", rc, error);

  // CHECK-LABEL: no C compiler: rc=1
  // CHECK-NEXT: C compiler 'sparsek-no-such-cc' not found
  setenv("CC", "sparsek-no-such-cc", 1);
  rc = sparsek_compiler_compile_shared_library(kMask, "sparsek-cpu-pipeline",
                                               path, 2, &error);
  expectFailure("no C compiler", rc, error);

  // The linker's own output is part of the message.
  // CHECK-LABEL: linker fails: rc=1
  // CHECK-NEXT: linking failed: {{.*}}false -shared
  setenv("CC", "false", 1);
  rc = sparsek_compiler_compile_shared_library(kMask, "sparsek-cpu-pipeline",
                                               path, 2, &error);
  expectFailure("linker fails", rc, error);
  unsetenv("CC");

  // CHECK: done
  printf("done\n");
  return 0;
}
