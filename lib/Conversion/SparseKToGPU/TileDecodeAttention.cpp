//===- TileDecodeAttention.cpp - The sparsek-tile-decode-attention pass ---===//
//
// Lowers buffer-form decode_attention tile first (DecodeTiles.h): the
// host-side checks of the parallel loop form, the split count and the
// partials, then the walk as a GPU kernel per group size or as scalar
// loops. Ops the kernel does not cover are left for sparsek-lower-to-loops;
// a group size known only at run time picks its kernel in an
// scf.index_switch whose default keeps the op for the loops.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Conversion/SparseKToLoops/Status.h"

#include "DecodeTiles.h"
#include "KernelMath.h"

#include "../SparseKToLoops/DecodeChecks.h"
#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/PatternMatch.h"

#include <optional>

namespace mlir::sparsek {
#define GEN_PASS_DEF_SPARSEKTILEDECODEATTENTION
#include "sparsek/Conversion/Passes.h.inc"
} // namespace mlir::sparsek

using namespace mlir;
using namespace mlir::sparsek;

/// G when Hq and Hkv are static (the verifier checked that they divide).
static std::optional<int64_t> staticGroup(DecodeAttentionOp op) {
  auto q = cast<MemRefType>(op.getQuery().getType());
  auto key = cast<MemRefType>(op.getKeySlots().getType());
  if (q.isDynamicDim(1) || key.isDynamicDim(1) || key.getDimSize(1) == 0)
    return std::nullopt;
  return q.getDimSize(1) / key.getDimSize(1);
}

/// A launch never needs more blocks than this (about 8000 per SM).
static constexpr int64_t kMaxTargetBlocks = int64_t(1) << 20;

static bool coveredGroup(int64_t g) { return g >= 1 && g <= kDecodeMaxGroup; }

namespace {
/// Lowers one op; `gpuModule` is created on first use (kernel form).
struct Lowering {
  ModuleOp module;
  bool kernel;
  bool mma; // math=mma
  int64_t targetBlocks;

  void lower(RewriterBase &rewriter, DecodeAttentionOp op);

private:
  /// `body(group)` for the static G, or in an scf.index_switch over the
  /// covered values of the run-time G whose default keeps a copy of `op`.
  void forGroup(OpBuilder &b, Location loc, DecodeAttentionOp op, Value group,
                function_ref<void(OpBuilder &, Location, int64_t)> body);
};
} // namespace

void Lowering::forGroup(
    OpBuilder &b, Location loc, DecodeAttentionOp op, Value group,
    function_ref<void(OpBuilder &, Location, int64_t)> body) {
  if (std::optional<int64_t> g = staticGroup(op))
    return body(b, loc, *g);
  SmallVector<int64_t> cases;
  for (int64_t g = 1; g <= kDecodeMaxGroup; ++g)
    cases.push_back(g);
  auto sw = scf::IndexSwitchOp::create(b, loc, TypeRange{}, group, cases,
                                       cases.size());
  for (auto [i, g] : llvm::enumerate(cases)) {
    Block &block = sw.getCaseRegions()[i].emplaceBlock();
    OpBuilder cb = OpBuilder::atBlockBegin(&block);
    body(cb, loc, g);
    scf::YieldOp::create(cb, loc);
  }
  Block &fallback = sw.getDefaultRegion().emplaceBlock();
  OpBuilder db = OpBuilder::atBlockBegin(&fallback);
  db.clone(*op.getOperation());
  scf::YieldOp::create(db, loc);
}

void Lowering::lower(RewriterBase &rewriter, DecodeAttentionOp op) {
  Location loc = op.getLoc();
  DecodeOperands ops{op.getQuery(),      op.getKeySlots(), op.getValueSlots(),
                     op.getSlotScores(), op.getTau(),      op.getPoolCount(),
                     op.getPositions(),  op.getInit()};
  // The host checks of the parallel loop form (LowerDecodeAttention.cpp):
  // sizes, and for the kernel's 16-byte loads aligned rows. The cache state
  // and scores are checked in the walk (DecodeSplitRange, emitSlotGate) and
  // reported through the device status, as that form's kernels do.
  DecodeSizes sizes(rewriter, loc, op);
  Value ok =
      emitCheck(rewriter, loc, op, emitDecodeShapesOk(rewriter, loc, op, sizes),
                SPARSEK_ERROR_SHAPE_MISMATCH);
  if (kernel) {
    bool aligned = false;
    ok = emitAnd(rewriter, loc,
                 {ok, emitRowAlignmentCheck(
                          rewriter, loc, op,
                          {ops.q, ops.key, ops.value, ops.out}, aligned)});
    assert(aligned && "decodeTilesUnsupportedReason admits 64/128 rows");
  }
  int64_t k = op.getKAttr().getInt(), w = op.getWAttr().getInt();
  int64_t d = cast<MemRefType>(ops.key.getType()).getDimSize(3);
  Operation *gpuModule = nullptr;
  std::string counters;
  if (kernel) {
    MLIRContext *ctx = rewriter.getContext();
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(ctx));
    std::string name;
    for (int i = 0;; ++i) {
      name = "sparsek_decode_tiles_" + std::to_string(i);
      if (!module.lookupSymbol(name))
        break;
    }
    OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
    gpuModule = gpu::GPUModuleOp::create(mb, loc, name);
    counters = declareSplitCounters(
                   mb, loc, gpuModule, "split_counters", targetBlocks,
                   gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Global))
                   .str();
  } else {
    OpBuilder mb(rewriter.getContext());
    counters =
        declareSplitCounters(mb, loc, module, "sparsek_decode_split_counters",
                             targetBlocks, Attribute())
            .str();
  }
  emitIf(rewriter, loc, ok, [&](OpBuilder &b, Location l) {
    KernelMath x{b, l};
    Value pairs = x.mul(sizes.batch, sizes.hkv);
    Value splits = emitDecodeSplits(b, l, pairs, k + w, targetBlocks);
    // Partials only where splits are merged (then pairs < targetBlocks).
    Value rows = x.sel(x.lt(x.c(1), splits), x.mul(pairs, splits), x.c(0));
    Value partials = memref::AllocOp::create(
        b, l,
        MemRefType::get(
            {ShapedType::kDynamic, ShapedType::kDynamic, partialStride(d)},
            b.getF32Type()),
        ValueRange{rows, sizes.group});
    DecodeTileProblem p{op,          ops,       k,     w,      d,
                        sizes.batch, sizes.hkv, pairs, splits, partials};
    if (kernel) {
      forGroup(b, l, op, sizes.group,
               [&](OpBuilder &gb, Location gl, int64_t g) {
                 emitDecodeTileLaunch(gb, gl, p, gpuModule, counters, g, mma);
               });
    } else if (staticGroup(op)) {
      emitDecodeScalarTiles(b, l, p, sizes.group, counters, mma);
    } else {
      // One walk for every covered G; others keep the loops.
      Value covered = x.andI(x.lt(x.c(0), sizes.group),
                             x.lt(sizes.group, x.c(kDecodeMaxGroup + 1)));
      auto ifOp = scf::IfOp::create(b, l, covered, /*withElse=*/true);
      OpBuilder tb = ifOp.getThenBodyBuilder();
      emitDecodeScalarTiles(tb, l, p, sizes.group, counters, mma);
      OpBuilder eb = ifOp.getElseBodyBuilder();
      eb.clone(*op.getOperation());
    }
    memref::DeallocOp::create(b, l, partials);
  });
  rewriter.eraseOp(op);
}

namespace {
struct SparseKTileDecodeAttentionPass
    : mlir::sparsek::impl::SparseKTileDecodeAttentionBase<
          SparseKTileDecodeAttentionPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    bool kernel = form == "kernel";
    if (!kernel && form != "scalar") {
      mlir::emitError(module.getLoc())
          << "sparsek-tile-decode-attention: form must be kernel or scalar, "
             "got '"
          << form << "'";
      return signalPassFailure();
    }
    if (math != "simt" && math != "mma") {
      mlir::emitError(module.getLoc())
          << "sparsek-tile-decode-attention: math must be simt or mma, got '"
          << math << "'";
      return signalPassFailure();
    }
    // The split counters are a device global of target-blocks words.
    if (targetBlocks < 1 || targetBlocks > kMaxTargetBlocks) {
      mlir::emitError(module.getLoc())
          << "sparsek-tile-decode-attention: target-blocks must be in [1, "
          << kMaxTargetBlocks << "], got "
          << static_cast<int64_t>(targetBlocks);
      return signalPassFailure();
    }
    SmallVector<DecodeAttentionOp> ops;
    module.walk([&](DecodeAttentionOp op) { ops.push_back(op); });
    if (ops.empty())
      return;
    IRRewriter rewriter(&getContext());
    Lowering lowering{module, kernel, math == "mma", targetBlocks};
    bool statusReady = false;
    for (DecodeAttentionOp op : ops) {
      if (!op.hasPureBufferSemantics()) {
        op.emitOpError() << "is in tensor form; sparsek-tile-decode-attention "
                            "lowers the buffer form: run one-shot-bufferize "
                            "first";
        return signalPassFailure();
      }
      if (!decodeTilesUnsupportedReason(op, kernel).empty())
        continue;
      if (std::optional<int64_t> g = staticGroup(op); g && !coveredGroup(*g))
        continue;
      if (!statusReady)
        ensureStatusSymbols(module);
      statusReady = true;
      rewriter.setInsertionPoint(op);
      lowering.lower(rewriter, op);
    }
  }
};
} // namespace
