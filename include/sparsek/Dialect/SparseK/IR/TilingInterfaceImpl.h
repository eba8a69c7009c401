//===- TilingInterfaceImpl.h - Tiling sparsek ops ---------------*- C++ -*-===//
//
// Attaches TilingInterface to attention, decode_attention and score (batch,
// head and query dimensions parallel).
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_DIALECT_SPARSEK_IR_TILINGINTERFACEIMPL_H
#define SPARSEK_DIALECT_SPARSEK_IR_TILINGINTERFACEIMPL_H

namespace mlir {
class DialectRegistry;
namespace sparsek {
void registerTilingInterfaceExternalModels(DialectRegistry &registry);
} // namespace sparsek
} // namespace mlir

#endif // SPARSEK_DIALECT_SPARSEK_IR_TILINGINTERFACEIMPL_H
