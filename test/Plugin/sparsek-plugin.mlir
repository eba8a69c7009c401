// The dialect + pass plugin (lib/Plugin) in Debian's stock mlir-opt: scoring
// and select_attention lower there exactly as in sparsek-opt, for the CPU and
// for the GPU (PTX; the IR records compile times, which differ).
// RUN: sparsek-opt %s --sparsek-cpu-pipeline > %t.cpu.ref
// RUN: %mlir-opt-sparsek %s -p 'builtin.module(sparsek-cpu-pipeline)' > %t.cpu
// RUN: diff %t.cpu.ref %t.cpu
// RUN: sparsek-opt %s --sparsek-gpu-pipeline=format=isa | sed 's/TimeInMs = [0-9]*/TimeInMs/' > %t.gpu.ref
// RUN: %mlir-opt-sparsek %s -p 'builtin.module(sparsek-gpu-pipeline{format=isa})' | sed 's/TimeInMs = [0-9]*/TimeInMs/' > %t.gpu
// RUN: diff %t.gpu.ref %t.gpu
//
// The dialect plugin alone also registers the passes; loading the plugin
// several times registers everything once.
// RUN: mlir-opt %s --load-dialect-plugin=%sparsek_plugin -p 'builtin.module(sparsek-cpu-pipeline)' | FileCheck %s --check-prefix=CHECK-CPU
// RUN: %mlir-opt-sparsek %s --load-dialect-plugin=%sparsek_plugin --load-pass-plugin=%sparsek_plugin -p 'builtin.module(sparsek-cpu-pipeline)' | FileCheck %s --check-prefix=CHECK-CPU
// CHECK-CPU: llvm.func @_mlir_ciface_layer_entry(
// CHECK-CPU-NOT: sparsek.
//
// A tool that links the dialect itself (sparsek-opt) keeps its own dialect
// and passes when it loads the plugin: nothing is registered twice.
// RUN: sparsek-opt %s --load-dialect-plugin=%sparsek_plugin --load-pass-plugin=%sparsek_plugin -p 'builtin.module(sparsek-cpu-pipeline)' | FileCheck %s --check-prefix=CHECK-CPU
//
// The pass plugin alone cannot parse sparsek ops: a plain diagnostic.
// RUN: not mlir-opt %s --load-pass-plugin=%sparsek_plugin 2>&1 | FileCheck %s --check-prefix=CHECK-NODIALECT
// CHECK-NODIALECT: error: Dialect `sparsek' not found for custom op 'sparsek.score'
//
// A second copy of the plugin used as the dialect plugin after the first
// registered the passes would pair passes and ops that do not know each
// other: it is refused with a message instead.
// RUN: cp %sparsek_plugin %t.copy.so
// RUN: not mlir-opt %s --load-pass-plugin=%sparsek_plugin --load-dialect-plugin=%t.copy.so 2>&1 | FileCheck %s --check-prefix=CHECK-COPY
// CHECK-COPY: SparseK plugin: the sparsek passes come from another library; load the dialect plugin from that same file
// CHECK-COPY: error: Dialect `sparsek' not found

func.func @layer(%x: tensor<1x?x64xf32>, %wsc: tensor<2x64xf32>, %q: tensor<1x4x?x16xf32>,
                 %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x16xf32>, %u0: tensor<1x2x?xf32>,
                 %o0: tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32> {
  %u = sparsek.score ins(%x, %wsc : tensor<1x?x64xf32>, tensor<2x64xf32>)
         outs(%u0 : tensor<1x2x?xf32>) -> tensor<1x2x?xf32>
  %o = sparsek.select_attention ins(%q, %k, %v, %u : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>,
                                    tensor<1x2x?x16xf32>, tensor<1x2x?xf32>)
         k = 8 w = 4 outs(%o0 : tensor<1x4x?x16xf32>) -> tensor<1x4x?x16xf32>
  return %o : tensor<1x4x?x16xf32>
}
