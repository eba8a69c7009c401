// parallel-loops keeps a query row and its value accumulator in registers
// (vectors) only up to 1024 elements: vector ops are unrolled per element
// down the GPU pipeline, so compile time grew with the head dimension
// (minutes at 100000, and an LLVM crash at 2^32). Longer rows use the
// memory form, whose loops do not depend on the length; value rows beyond a
// GPU thread's 512 KiB of local memory are refused.
// RUN: sparsek-opt %s -split-input-file -verify-diagnostics -sparsek-lower-to-loops=parallel-loops | FileCheck %s

// CHECK-LABEL: func.func @register_row
// CHECK-NOT: memref.alloca
// CHECK: scf.for {{.*}} -> (f32, f32, vector<1024xf32>)
// CHECK: vector.reduction <add>, %{{.*}} : vector<1024xf32> into f32
func.func @register_row(%q: memref<1x1x?x1024xf32>, %k: memref<1x1x?x1024xf32>,
                        %v: memref<1x1x?x1024xf32>, %i: memref<1x1x?x4xi32>,
                        %g: memref<1x1x?x4xf32>, %o: memref<1x1x?x1024xf32>) {
  sparsek.attention ins(%q, %k, %v, %i, %g : memref<1x1x?x1024xf32>, memref<1x1x?x1024xf32>,
                        memref<1x1x?x1024xf32>, memref<1x1x?x4xi32>, memref<1x1x?x4xf32>)
      w = 4 outs(%o : memref<1x1x?x1024xf32>)
  return
}

// -----

// CHECK-LABEL: func.func @memory_row
// CHECK: memref.alloca() : memref<1025xf32>
// CHECK-NOT: vector<1025xf32>
// CHECK: return
func.func @memory_row(%q: memref<1x1x?x1025xf32>, %k: memref<1x1x?x1025xf32>,
                      %v: memref<1x1x?x1025xf32>, %i: memref<1x1x?x4xi32>,
                      %g: memref<1x1x?x4xf32>, %o: memref<1x1x?x1025xf32>) {
  sparsek.attention ins(%q, %k, %v, %i, %g : memref<1x1x?x1025xf32>, memref<1x1x?x1025xf32>,
                        memref<1x1x?x1025xf32>, memref<1x1x?x4xi32>, memref<1x1x?x4xf32>)
      w = 4 outs(%o : memref<1x1x?x1025xf32>)
  return
}

// -----

// A key dimension of 2^32 with short value rows: the dot product loops over
// memory, the accumulator stays a vector.
// CHECK-LABEL: func.func @huge_key_row
// CHECK-NOT: vector<4294967296xf32>
// CHECK: scf.for {{.*}} -> (f32, f32, vector<16xf32>)
// CHECK-NOT: vector<4294967296xf32>
// CHECK: return
func.func @huge_key_row(%q: memref<1x1x?x4294967296xf32>, %k: memref<1x1x?x4294967296xf32>,
                        %v: memref<1x1x?x16xf32>, %i: memref<1x1x?x4xi32>,
                        %g: memref<1x1x?x4xf32>, %o: memref<1x1x?x16xf32>) {
  sparsek.attention ins(%q, %k, %v, %i, %g : memref<1x1x?x4294967296xf32>, memref<1x1x?x4294967296xf32>,
                        memref<1x1x?x16xf32>, memref<1x1x?x4xi32>, memref<1x1x?x4xf32>)
      w = 4 outs(%o : memref<1x1x?x16xf32>)
  return
}

// -----

// Decode split over the slots: partials stored and merged element by
// element when the value row is long.
// CHECK-LABEL: func.func @long_decode_rows
// CHECK-NOT: vector<2048xf32>
// CHECK: return
func.func @long_decode_rows(%q: memref<?x1x16xf32>, %ks: memref<?x1x8x16xf32>,
                            %vs: memref<?x1x8x2048xf32>, %sc: memref<?x1x8xf32>,
                            %tau: memref<?x1xf32>, %n: memref<?x1xi32>,
                            %pos: memref<?xi64>, %o: memref<?x1x2048xf32>) {
  sparsek.decode_attention ins(%q, %ks, %vs, %sc, %tau, %n, %pos : memref<?x1x16xf32>, memref<?x1x8x16xf32>,
                               memref<?x1x8x2048xf32>, memref<?x1x8xf32>, memref<?x1xf32>,
                               memref<?x1xi32>, memref<?xi64>)
      k = 4 w = 4 outs(%o : memref<?x1x2048xf32>)
  return
}

// -----

func.func @value_row_beyond_local_memory(%q: memref<?x1x16xf32>, %ks: memref<?x1x8x16xf32>,
                                         %vs: memref<?x1x8x131073xf32>, %sc: memref<?x1x8xf32>,
                                         %tau: memref<?x1xf32>, %n: memref<?x1xi32>,
                                         %pos: memref<?xi64>, %o: memref<?x1x131073xf32>) {
  // expected-error@+1 {{value head dimension 131073 is too large for the parallel (GPU) form: each query keeps its f32 accumulator in the thread's local memory, at most 131072 (512 KiB)}}
  sparsek.decode_attention ins(%q, %ks, %vs, %sc, %tau, %n, %pos : memref<?x1x16xf32>, memref<?x1x8x16xf32>,
                               memref<?x1x8x131073xf32>, memref<?x1x8xf32>, memref<?x1xf32>,
                               memref<?x1xi32>, memref<?xi64>)
      k = 4 w = 4 outs(%o : memref<?x1x131073xf32>)
  return
}
