//===- TileLaunch.cpp - The host side both tensor-core tile forms share ---===//
//
// The mma.sync and wgmma forms differ only inside the kernel; the argument
// list, the per-op gpu.module and the guarded launch over the tile grid are
// built here once.
//
//===----------------------------------------------------------------------===//
#include "TileLowerings.h"

#include "../SparseKToLoops/LoopUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"

#include <string>

using namespace mlir;
using namespace mlir::sparsek;

TileKernelArgs TileKernelArgs::fromProblem(const TileProblem &p) {
  SelectAttentionOp op = p.op;
  TileKernelArgs a{op.getQuery(),  op.getKey(),  op.getValue(),
                   op.getScores(), op.getInit(), Value(),
                   Value(),        {},           p.scale};
  if (p.keys) {
    a.lists = p.keys->lists;
    a.counts = p.keys->counts;
    a.thresholds = p.keys->thresholds;
  }
  return a;
}

TileKernelArgs TileKernelArgs::fromKernel(ValueRange v, bool selects) {
  TileKernelArgs a{v[0], v[1], v[2], v[3], v[4], {}, {}, {}, v.back()};
  if (selects) {
    a.lists = v[5];
    a.counts = v[6];
    a.thresholds = {v[7], v[8], v[9]};
  }
  return a;
}

std::pair<Value, Value> sparsek::emitHeavyFirstTile(OpBuilder &b,
                                                    Location loc) {
  auto id = [&](gpu::Dimension d) {
    return gpu::BlockIdOp::create(b, loc, d).getResult();
  };
  auto dim = [&](gpu::Dimension d) {
    return gpu::GridDimOp::create(b, loc, d).getResult();
  };
  Value blocks = dim(gpu::Dimension::x), rows = dim(gpu::Dimension::y);
  Value order = arith::AddIOp::create(
      b, loc, id(gpu::Dimension::x),
      arith::MulIOp::create(b, loc, id(gpu::Dimension::y), blocks));
  Value fromLast = arith::DivUIOp::create(b, loc, order, rows);
  Value blk = arith::SubIOp::create(
      b, loc, arith::SubIOp::create(b, loc, blocks, emitIndex(b, loc, 1)),
      fromLast);
  return {blk, arith::RemUIOp::create(b, loc, order, rows)};
}

SmallVector<Value> TileKernelArgs::values() const {
  SmallVector<Value> v{q, key, value, scores, out};
  if (lists)
    v.append({lists, counts, thresholds.tau, thresholds.thetaScore,
              thresholds.thetaPos});
  v.push_back(scale);
  return v;
}

void sparsek::emitKernelLaunch(
    OpBuilder &b, Location loc, ModuleOp module, StringRef prefix,
    ValueRange args, int64_t threads, TypeRange workgroup, Value dynamicSmem,
    gpu::KernelDim3 grid, ArrayRef<Value> sizes,
    function_ref<void(OpBuilder &, Location, ValueRange, ValueRange)> body,
    StringRef kernelName) {
  MLIRContext *ctx = b.getContext();
  module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                  UnitAttr::get(ctx));
  std::string name;
  for (int i = 0;; ++i) {
    name = (prefix + "_" + std::to_string(i)).str();
    if (!module.lookupSymbol(name))
      break;
  }
  OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
  auto gpuModule = gpu::GPUModuleOp::create(mb, loc, name);
  mb.setInsertionPointToStart(gpuModule.getBody());
  auto fn = gpu::GPUFuncOp::create(mb, loc, kernelName,
                                   FunctionType::get(ctx, args.getTypes(), {}),
                                   workgroup, TypeRange{});
  fn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), mb.getUnitAttr());
  fn.setKnownBlockSizeAttr(
      DenseI32ArrayAttr::get(ctx, {int32_t(threads), 1, 1}));
  // Attributions default to 2-byte alignment.
  for (unsigned i = 0; i < workgroup.size(); ++i)
    fn.setWorkgroupAttributionAttr(i, "llvm.align", mb.getI64IntegerAttr(16));
  {
    OpBuilder kb = OpBuilder::atBlockBegin(&fn.getBody().front());
    body(kb, loc, fn.getArguments().take_front(args.size()),
         fn.getWorkgroupAttributions());
    gpu::ReturnOp::create(kb, loc);
  }
  Value one = emitIndex(b, loc, 1);
  emitIfNonEmpty(b, loc, sizes, [&](OpBuilder &lb, Location ll) {
    gpu::LaunchFuncOp::create(
        lb, ll, fn, grid, gpu::KernelDim3{emitIndex(lb, ll, threads), one, one},
        dynamicSmem, args);
  });
}

void sparsek::emitTileKernelLaunch(
    OpBuilder &b, Location loc, const TileProblem &p, ModuleOp module,
    StringRef prefix, int64_t threads, TypeRange workgroup, Value dynamicSmem,
    function_ref<void(OpBuilder &, Location, const TileKernelArgs &,
                      ValueRange)>
        body) {
  SmallVector<Value> args = TileKernelArgs::fromProblem(p).values();
  const FusedSizes &z = p.sizes;
  Value heads = arith::MulIOp::create(b, loc, z.hkv, p.geo.headSplits);
  emitKernelLaunch(
      b, loc, module, prefix, args, threads, workgroup, dynamicSmem,
      gpu::KernelDim3{p.geo.numBlocks, heads, z.batch},
      {p.geo.numBlocks, heads, z.batch, z.hq},
      [&](OpBuilder &kb, Location kl, ValueRange kernelArgs,
          ValueRange wgBufs) {
        body(kb, kl,
             TileKernelArgs::fromKernel(kernelArgs, static_cast<bool>(p.keys)),
             wgBufs);
      });
}
