// sparsek.attention becomes an online softmax per (b, h, t, g): a window
// loop and a loop over the selected indices, both carrying (max, sum) in f32,
// a Dv-float scratch allocated once per op, f32 accumulation of bf16 data,
// and run-time checks of the dynamic sizes through the status word.
// RUN: sparsek-opt %s -sparsek-lower-to-loops -split-input-file | FileCheck %s

// CHECK-LABEL: func.func @attention_bf16_gqa
// CHECK-SAME: %[[Q:[^:]*]]: memref<1x8x?x64xbf16>, %[[K:[^:]*]]: memref<1x2x?x64xbf16>, %[[V:[^:]*]]: memref<1x2x?x32xbf16>, %[[IDX:[^:]*]]: memref<1x2x?x16xi32>, %[[G:[^:]*]]: memref<1x2x?x16xf32>, %[[O:[^:]*]]: memref<1x8x?x32xbf16>
// CHECK: %[[T:.*]] = memref.dim %[[Q]], %{{.*}} : memref<1x8x?x64xbf16>
// CHECK: %[[S:.*]] = memref.dim %[[K]], %{{.*}} : memref<1x2x?x64xbf16>
// Dynamic T of q, indices, gates and output, and S of key and value must agree.
// CHECK: memref.dim %[[IDX]]
// CHECK: memref.dim %[[G]]
// CHECK: memref.dim %[[O]]
// CHECK: memref.dim %[[V]]
// CHECK: %[[BAD:.*]] = arith.xori %[[SHAPES:.*]], %{{.*}} : i1
// CHECK: scf.if %[[BAD]] {
// CHECK: memref.get_global @__sparsek_status
// CHECK: arith.constant 2 : i32
// CHECK: %[[FITS:.*]] = arith.cmpi ule, %[[T]], %[[S]] : index
// CHECK: %[[BAD2:.*]] = arith.xori %[[FITS]]
// CHECK: scf.if %[[BAD2]] {
// CHECK: arith.constant 3 : i32
// CHECK: %[[OK:.*]] = arith.andi %[[SHAPES]], %[[FITS]] : i1
// CHECK: scf.if %[[OK]] {
// Default scale 1/sqrt(64).
// CHECK: %[[SCALE:.*]] = arith.constant 1.250000e-01 : f32
// CHECK: %[[ACC:.*]] = memref.alloc() : memref<32xf32>
// CHECK: %[[FIRST:.*]] = arith.subi %[[S]], %[[T]] : index
// CHECK: scf.for %[[B:[^ ]*]] =
// CHECK: scf.for %[[H:[^ ]*]] =
// CHECK: scf.for %[[TI:[^ ]*]] = %{{.*}} to %[[T]] step
// CHECK: %[[POS:.*]] = arith.addi %[[FIRST]], %[[TI]] : index
// G = 8 / 2 query heads per KV head.
// CHECK: scf.for %[[GI:[^ ]*]] = %{{.*}} to %[[C4:[^ ]*]] step
// CHECK: %[[HQ0:.*]] = arith.muli %[[H]], %[[C4]] : index
// CHECK: %[[HQ:.*]] = arith.addi %[[HQ0]], %[[GI]] : index
// CHECK: scf.for {{.*}} {
// CHECK: memref.store %{{.*}}, %[[ACC]]
// CHECK: }
// CHECK: %[[NINF:.*]] = arith.constant 0xFF800000 : f32
// Window pos - w + 1 .. pos, clamped at 0.
// CHECK: %[[END:.*]] = arith.addi %[[POS]], %{{.*}} : index
// CHECK: %[[START:.*]] = arith.subi %[[END]], %{{.*}} : index
// CHECK: %[[LO:.*]] = arith.maxsi %[[START]], %{{.*}} : index
// CHECK: %[[WIN:.*]]:2 = scf.for %[[J:[^ ]*]] = %[[LO]] to %[[END]] step %{{.*}} iter_args(%[[M:.*]] = %[[NINF]], %[[L:.*]] = %{{.*}}) -> (f32, f32) {
// CHECK: %[[DOT:.*]] = scf.for {{.*}} -> (f32) {
// CHECK: %[[QE:.*]] = memref.load %[[Q]][%[[B]], %[[HQ]], %[[TI]], %{{.*}}] : memref<1x8x?x64xbf16>
// CHECK: arith.extf %[[QE]] : bf16 to f32
// CHECK: %[[KE:.*]] = memref.load %[[K]][%[[B]], %[[H]], %[[J]], %{{.*}}] : memref<1x2x?x64xbf16>
// CHECK: arith.extf %[[KE]] : bf16 to f32
// CHECK: }
// CHECK: %[[SC:.*]] = arith.mulf %[[SCALE]], %[[DOT]] : f32
// CHECK: %[[MAX:.*]] = arith.maximumf %[[M]], %[[SC]] : f32
// CHECK: %[[D1:.*]] = arith.subf %[[M]], %[[MAX]] : f32
// CHECK: %[[ALPHA:.*]] = math.exp %[[D1]] : f32
// CHECK: %[[D2:.*]] = arith.subf %[[SC]], %[[MAX]] : f32
// CHECK: %[[P:.*]] = math.exp %[[D2]] : f32
// CHECK: %[[L1:.*]] = arith.mulf %[[L]], %[[ALPHA]] : f32
// CHECK: %[[SUM:.*]] = arith.addf %[[L1]], %[[P]] : f32
// CHECK: scf.for %[[C:[^ ]*]] =
// CHECK: %[[A0:.*]] = memref.load %[[ACC]][%[[C]]]
// CHECK: %[[A1:.*]] = arith.mulf %[[A0]], %[[ALPHA]] : f32
// CHECK: %[[VE:.*]] = memref.load %[[V]][%[[B]], %[[H]], %[[J]], %[[C]]] : memref<1x2x?x32xbf16>
// CHECK: %[[VF:.*]] = arith.extf %[[VE]] : bf16 to f32
// Window gate 1: the weight is p itself.
// CHECK: %[[PV:.*]] = arith.mulf %[[P]], %[[VF]] : f32
// CHECK: %[[A2:.*]] = arith.addf %[[A1]], %[[PV]] : f32
// CHECK: memref.store %[[A2]], %[[ACC]][%[[C]]]
// CHECK: scf.yield %[[MAX]], %[[SUM]] : f32, f32
// Selected entries j count only when 0 <= j <= pos - w.
// CHECK: %[[LAST:.*]] = arith.subi %[[POS]], %{{.*}} : index
// CHECK: %[[SEL:.*]]:2 = scf.for %[[I:[^ ]*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[M2:.*]] = %[[WIN]]#0, %[[L2:.*]] = %[[WIN]]#1) -> (f32, f32) {
// CHECK: %[[RAW:.*]] = memref.load %[[IDX]][%[[B]], %[[H]], %[[TI]], %[[I]]] : memref<1x2x?x16xi32>
// CHECK: %[[JS:.*]] = arith.index_cast %[[RAW]] : i32 to index
// CHECK: %[[GATE:.*]] = memref.load %[[G]][%[[B]], %[[H]], %[[TI]], %[[I]]] : memref<1x2x?x16xf32>
// CHECK: %[[GE:.*]] = arith.cmpi sge, %[[JS]], %{{.*}} : index
// CHECK: %[[LE:.*]] = arith.cmpi sle, %[[JS]], %[[LAST]] : index
// CHECK: %[[VALID:.*]] = arith.andi %[[GE]], %[[LE]] : i1
// CHECK: %[[NEXT:.*]]:2 = scf.if %[[VALID]] -> (f32, f32) {
// CHECK: memref.load %[[K]][%[[B]], %[[H]], %[[JS]], %{{.*}}]
// CHECK: math.exp
// CHECK: %[[P2:.*]] = math.exp
// The gate weighs the value, not the normalizer.
// CHECK: %[[SUM2:.*]] = arith.addf %{{.*}}, %[[P2]] : f32
// CHECK: %[[W2:.*]] = arith.mulf %[[P2]], %[[GATE]] : f32
// CHECK: memref.load %[[V]][%[[B]], %[[H]], %[[JS]], %{{.*}}]
// CHECK: arith.mulf %[[W2]]
// CHECK: scf.yield %{{.*}}, %[[SUM2]] : f32, f32
// CHECK: } else {
// CHECK: scf.yield %[[M2]], %[[L2]] : f32, f32
// CHECK: }
// CHECK: scf.yield %[[NEXT]]#0, %[[NEXT]]#1 : f32, f32
// An empty set writes 0, not 0/0.
// CHECK: %[[EMPTY:.*]] = arith.cmpf oeq, %[[SEL]]#1, %[[ZERO:.*]] : f32
// CHECK: %[[RCP:.*]] = arith.divf %{{.*}}, %[[SEL]]#1 : f32
// CHECK: %[[INV:.*]] = arith.select %[[EMPTY]], %[[ZERO]], %[[RCP]] : f32
// CHECK: scf.for %[[D:[^ ]*]] =
// CHECK: %[[AO:.*]] = memref.load %[[ACC]][%[[D]]]
// CHECK: %[[OF:.*]] = arith.mulf %[[AO]], %[[INV]] : f32
// CHECK: %[[OB:.*]] = arith.truncf %[[OF]] : f32 to bf16
// CHECK: memref.store %[[OB]], %[[O]][%[[B]], %[[HQ]], %[[TI]], %[[D]]] : memref<1x8x?x32xbf16>
// CHECK: memref.dealloc %[[ACC]]
// CHECK-NOT: sparsek.attention
func.func @attention_bf16_gqa(%q: memref<1x8x?x64xbf16>, %k: memref<1x2x?x64xbf16>,
                              %v: memref<1x2x?x32xbf16>, %idx: memref<1x2x?x16xi32>,
                              %g: memref<1x2x?x16xf32>, %o: memref<1x8x?x32xbf16>) {
  sparsek.attention ins(%q, %k, %v, %idx, %g : memref<1x8x?x64xbf16>, memref<1x2x?x64xbf16>,
                        memref<1x2x?x32xbf16>, memref<1x2x?x16xi32>, memref<1x2x?x16xf32>)
    w = 8 outs(%o : memref<1x8x?x32xbf16>)
  return
}

// -----

// Static sizes need no run-time check; f32 data needs no extf/truncf; with
// K = 0 only the window loop is left; an explicit scale is used as given.
// CHECK-LABEL: func.func @attention_static_window_only
// CHECK-NOT: __sparsek_status
// CHECK-NOT: arith.extf
// CHECK: arith.constant 5.000000e-01 : f32
// CHECK: memref.alloc() : memref<8xf32>
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (f32, f32)
// CHECK-NOT: iter_args({{.*}}) -> (f32, f32)
// CHECK-NOT: scf.if {{.*}} -> (f32, f32)
// CHECK-NOT: arith.truncf
// CHECK: memref.store %{{.*}}, %{{.*}} : memref<2x4x8x8xf32>
// CHECK-NOT: sparsek.attention
func.func @attention_static_window_only(%q: memref<2x4x8x16xf32>, %k: memref<2x4x24x16xf32>,
                                        %v: memref<2x4x24x8xf32>, %idx: memref<2x4x8x0xi64>,
                                        %g: memref<2x4x8x0xf32>, %o: memref<2x4x8x8xf32>) {
  sparsek.attention ins(%q, %k, %v, %idx, %g : memref<2x4x8x16xf32>, memref<2x4x24x16xf32>,
                        memref<2x4x24x8xf32>, memref<2x4x8x0xi64>, memref<2x4x8x0xf32>)
    w = 4 scale = 0.5 outs(%o : memref<2x4x8x8xf32>)
  return
}

// -----

// Dynamic heads: G = Hq / Hkv is computed without dividing by zero and the
// split must be exact; with w = 0 only the selected loop is left; i64
// indices; the default scale 1/sqrt(D) is computed from the dynamic D.
// CHECK-LABEL: func.func @attention_dynamic_heads
// CHECK-SAME: %[[Q:[^:]*]]: memref<?x?x?x?xf32>, %[[K:[^:]*]]: memref<?x?x?x?xf32>
// CHECK: memref.dim %[[Q]], %{{.*}} : memref<?x?x?x?xf32>
// CHECK: %[[HQ:.*]] = memref.dim %[[Q]], %[[C1:.*]] : memref<?x?x?x?xf32>
// CHECK: %[[HKV:.*]] = memref.dim %[[K]], %[[C1B:.*]] : memref<?x?x?x?xf32>
// CHECK: memref.dim %[[Q]]
// CHECK: memref.dim %[[K]]
// CHECK: %[[DD:.*]] = memref.dim %[[Q]], %[[C3:.*]] : memref<?x?x?x?xf32>
// CHECK: %[[SAFE:.*]] = arith.maxui %[[HKV]], %{{.*}} : index
// CHECK: %[[GS:.*]] = arith.divui %[[HQ]], %[[SAFE]] : index
// CHECK: %[[BACK:.*]] = arith.muli %[[GS]], %[[HKV]] : index
// CHECK: %[[EXACT:.*]] = arith.cmpi eq, %[[BACK]], %[[HQ]] : index
// CHECK: %[[SHAPES:.*]] = arith.andi %{{.*}}, %[[EXACT]] : i1
// CHECK: arith.xori %[[SHAPES]]
// CHECK: arith.constant 2 : i32
// CHECK: scf.if
// CHECK: %[[DI:.*]] = arith.index_cast %[[DD]] : index to i64
// CHECK: %[[DF:.*]] = arith.sitofp %[[DI]] : i64 to f32
// CHECK: %[[ROOT:.*]] = math.sqrt %[[DF]] : f32
// CHECK: %[[SCALE:.*]] = arith.divf %{{.*}}, %[[ROOT]] : f32
// CHECK: memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK: scf.for %{{.*}} = %{{.*}} to %[[GS]] step
// CHECK-NOT: arith.maxsi
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (f32, f32)
// CHECK: arith.index_cast %{{.*}} : i64 to index
// CHECK: arith.mulf %[[SCALE]]
// CHECK-NOT: sparsek.attention
func.func @attention_dynamic_heads(%q: memref<?x?x?x?xf32>, %k: memref<?x?x?x?xf32>,
                                   %v: memref<?x?x?x?xf32>, %idx: memref<?x?x?x?xi64>,
                                   %g: memref<?x?x?x?xf32>, %o: memref<?x?x?x?xf32>) {
  sparsek.attention ins(%q, %k, %v, %idx, %g : memref<?x?x?x?xf32>, memref<?x?x?x?xf32>,
                        memref<?x?x?x?xf32>, memref<?x?x?x?xi64>, memref<?x?x?x?xf32>)
    w = 0 outs(%o : memref<?x?x?x?xf32>)
  return
}
