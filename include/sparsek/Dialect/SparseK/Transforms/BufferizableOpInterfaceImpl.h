//===- BufferizableOpInterfaceImpl.h - Bufferization of sparsek ops -------===//
//
// Attaches BufferizableOpInterface to every sparsek op (in-place into its
// destinations), so one-shot-bufferize turns the tensor form into the buffer
// form.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_DIALECT_SPARSEK_TRANSFORMS_BUFFERIZABLEOPINTERFACEIMPL_H
#define SPARSEK_DIALECT_SPARSEK_TRANSFORMS_BUFFERIZABLEOPINTERFACEIMPL_H

namespace mlir {
class DialectRegistry;
namespace sparsek {
void registerBufferizableOpInterfaceExternalModels(DialectRegistry &registry);
} // namespace sparsek
} // namespace mlir

#endif // SPARSEK_DIALECT_SPARSEK_TRANSFORMS_BUFFERIZABLEOPINTERFACEIMPL_H
