//===- SparseKOps.h - Operations of the sparsek dialect ---------*- C++ -*-===//
//
// Declares the sparsek ops (generated from SparseKOps.td).
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_DIALECT_SPARSEK_IR_SPARSEKOPS_H
#define SPARSEK_DIALECT_SPARSEK_IR_SPARSEKOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "sparsek/Dialect/SparseK/IR/SparseKDialect.h"

#define GET_OP_CLASSES
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h.inc"

#endif // SPARSEK_DIALECT_SPARSEK_IR_SPARSEKOPS_H
