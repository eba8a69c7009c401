//===- Passes.h - Conversions of sparsek ops --------------------*- C++ -*-===//
//
// Declares the sparsek conversion passes and their registration.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_CONVERSION_PASSES_H
#define SPARSEK_CONVERSION_PASSES_H

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::sparsek {

#define GEN_PASS_DECL
#include "sparsek/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "sparsek/Conversion/Passes.h.inc"

} // namespace mlir::sparsek

#endif // SPARSEK_CONVERSION_PASSES_H
