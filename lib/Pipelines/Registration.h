//===- Registration.h - Named pipelines whose options are checked ---------===//
//
// PassPipelineRegistration<Options> hands parsed options to a builder that
// cannot fail, so a bad value (an empty chip, an unknown binary format)
// reached upstream passes unchecked. Pipelines registered here are built by
// our build functions, which check every option first: sparsek-opt, the
// compiler C API and every pipeline string that names them report an
// invalid option as an error of the pipeline text.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_LIB_PIPELINES_REGISTRATION_H
#define SPARSEK_LIB_PIPELINES_REGISTRATION_H

#include "sparsek/Pipelines/Pipelines.h"

#include "mlir/Pass/PassRegistry.h"

#include <string>

namespace mlir::sparsek {

template <typename Options>
using PipelineBuilder = LogicalResult (*)(OpPassManager &, const Options &,
                                          OptionErrorHandler);

template <typename Options>
void registerCheckedPipeline(llvm::StringRef arg, llvm::StringRef description,
                             PipelineBuilder<Options> build) {
  registerPassPipeline(
      arg, description,
      [name = arg.str(), build](
          OpPassManager &pm, llvm::StringRef text,
          llvm::function_ref<LogicalResult(const llvm::Twine &)> errorHandler)
          -> LogicalResult {
        Options options;
        std::string parseErrors;
        llvm::raw_string_ostream os(parseErrors);
        // A value that does not parse (query-block=abc) is reported by
        // llvm::cl on stderr, not on `os`: name the text at least.
        if (failed(options.parseFromString(text, os)))
          return errorHandler(name + ": cannot parse the options '" + text +
                              "'" + (parseErrors.empty() ? "" : ": ") +
                              llvm::StringRef(parseErrors).trim());
        bool reported = false;
        if (succeeded(build(pm, options, [&](const llvm::Twine &message) {
              reported = true;
              (void)errorHandler(message);
            })))
          return success();
        if (!reported)
          (void)errorHandler(name + ": an upstream pass of the pipeline is "
                                    "not registered");
        return failure();
      },
      [](llvm::function_ref<void(const detail::PassOptions &)> optHandler) {
        optHandler(Options());
      });
}

/// Prints an option error to llvm::errs(): the report of build functions
/// called without one.
void reportOptionErrorToStderr(const llvm::Twine &message);

} // namespace mlir::sparsek

#endif // SPARSEK_LIB_PIPELINES_REGISTRATION_H
