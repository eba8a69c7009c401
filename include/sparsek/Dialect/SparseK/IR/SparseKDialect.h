//===- SparseKDialect.h - The sparsek dialect -------------------*- C++ -*-===//
//
// Declares the sparsek dialect class (generated from SparseKDialect.td).
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_DIALECT_SPARSEK_IR_SPARSEKDIALECT_H
#define SPARSEK_DIALECT_SPARSEK_IR_SPARSEKDIALECT_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Dialect.h"

#include "sparsek/Dialect/SparseK/IR/SparseKOpsDialect.h.inc"

#endif // SPARSEK_DIALECT_SPARSEK_IR_SPARSEKDIALECT_H
