//===- Compiler.cpp - C API: parse, run pipelines, compile to a library ---===//
//
// Implements include/sparsek-c/Compiler.h. Every failure becomes a message
// (MLIR diagnostics, LLVM errors, the linker's output) returned to the
// caller; nothing here may abort on bad input, and what upstream code does
// abort on ends a child process, not the caller (Isolation.h).
//
//===----------------------------------------------------------------------===//
#include "sparsek-c/Compiler.h"

#include "Isolation.h"
#include "sparsek/InitAllSparseK.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

using namespace mlir;
using mlir::sparsek::capi::Outcome;
using mlir::sparsek::capi::runIsolated;

namespace {

/// MLIR's NVVM target finds ptxas and libdevice through CUDA_ROOT, CUDA_HOME
/// or CUDA_PATH; as sparsek-opt does, default to the standard toolkit
/// location when none is set.
/// Registers passes, pipelines and native codegen once per process: the
/// registries are global, and a pipeline string can only name what they hold.
/// Done here, before the first fork, so that every compiler process starts
/// with them (registration holds no lock once it returns).
/// The same registrations as tools/sparsek-opt (sparsek/InitAllSparseK.h).
void initializeOnce() {
  static std::once_flag flag;
  std::call_once(flag, [] {
    sparsek::setDefaultCudaToolkitPath();
    registerAllPasses();
    sparsek::registerAllSparseKPasses();
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

/// What sparsek-opt registers, plus the translations to LLVM IR.
DialectRegistry makeRegistry() {
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  sparsek::registerAllSparseKDialects(registry);
  // Translation to LLVM IR, also of GPU kernels inside gpu-module-to-binary.
  registerAllToLLVMIRTranslations(registry);
  return registry;
}

char *copyString(llvm::StringRef s) {
  char *out = static_cast<char *>(std::malloc(s.size() + 1));
  if (!out)
    return nullptr;
  std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  return out;
}

int fail(char **error, const llvm::Twine &message) {
  if (error)
    *error = copyString(message.str());
  return 1;
}

/// One compilation: a context whose diagnostics are collected as text.
class Session {
public:
  Session()
      : context(makeRegistry()), handler(&context, [this](Diagnostic &diag) {
          std::string text;
          llvm::raw_string_ostream os(text);
          os << where(diag.getLocation()) << ": " << severity(diag) << ": "
             << diag << "\n";
          for (Diagnostic &note : diag.getNotes())
            os << where(note.getLocation()) << ": note: " << note << "\n";
          diagnostics += text;
          sparsek::capi::journalDiagnostic(text);
          return success();
        }) {}

  /// Parses and verifies `mlir`, then runs `pipeline` (module-anchored
  /// text, with or without builtin.module(...)).
  OwningOpRef<ModuleOp> parseAndRun(const char *mlir, const char *pipeline,
                                    std::string &error) {
    if (!mlir)
      return error = "no MLIR text given (null pointer)", nullptr;
    OwningOpRef<ModuleOp> module =
        parseSourceString<ModuleOp>(mlir, &context, "input");
    if (!module)
      return error =
                 "failed to parse or verify the MLIR input:\n" + diagnostics,
             nullptr;
    llvm::StringRef text = pipeline ? llvm::StringRef(pipeline).trim() : "";
    if (text.empty())
      return module;
    std::string wrapped = text.starts_with("builtin.module(")
                              ? text.str()
                              : "builtin.module(" + text.str() + ")";
    std::string parseErrors;
    llvm::raw_string_ostream errs(parseErrors);
    FailureOr<OpPassManager> parsed = parsePassPipeline(wrapped, errs);
    if (failed(parsed))
      return error = "invalid pass pipeline '" + text.str() +
                     "': " + parseErrors + diagnostics,
             nullptr;
    PassManager pm(&context, ModuleOp::getOperationName());
    static_cast<OpPassManager &>(pm) = std::move(*parsed);
    if (failed(pm.run(*module)))
      return error =
                 "pass pipeline '" + text.str() + "' failed:\n" + diagnostics,
             nullptr;
    return module;
  }

  std::string diagnostics;

private:
  /// "file:line:col" as compilers print it, else the location as MLIR does.
  static std::string where(Location loc) {
    if (auto flc = loc->findInstanceOf<FileLineColLoc>())
      return (flc.getFilename().strref() + ":" + llvm::Twine(flc.getLine()) +
              ":" + llvm::Twine(flc.getColumn()))
          .str();
    std::string text;
    llvm::raw_string_ostream os(text);
    os << loc;
    return text;
  }

  static const char *severity(Diagnostic &diag) {
    switch (diag.getSeverity()) {
    case DiagnosticSeverity::Error:
      return "error";
    case DiagnosticSeverity::Warning:
      return "warning";
    case DiagnosticSeverity::Remark:
      return "remark";
    case DiagnosticSeverity::Note:
      return "note";
    }
    return "error";
  }

  MLIRContext context;
  ScopedDiagnosticHandler handler;
};

/// A host target machine for PIC objects. The CPU is generic (as llc's
/// default) so a library built here also runs on other machines of the
/// same architecture, e.g. the GPU host.
std::unique_ptr<llvm::TargetMachine> makeHostMachine(int optLevel,
                                                     std::string &error) {
  llvm::Triple triple(llvm::sys::getProcessTriple());
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return nullptr;
  llvm::CodeGenOptLevel level = optLevel <= 0   ? llvm::CodeGenOptLevel::None
                                : optLevel == 1 ? llvm::CodeGenOptLevel::Less
                                : optLevel == 2
                                    ? llvm::CodeGenOptLevel::Default
                                    : llvm::CodeGenOptLevel::Aggressive;
  std::unique_ptr<llvm::TargetMachine> machine(
      target->createTargetMachine(triple, "generic", "", llvm::TargetOptions(),
                                  llvm::Reloc::PIC_, std::nullopt, level));
  if (!machine)
    error = "cannot create a target machine for " + triple.str();
  return machine;
}

/// The new pass manager's default pipeline at `optLevel` (what clang -O<n>
/// runs); llc alone would skip IR optimization.
void optimize(llvm::Module &module, llvm::TargetMachine &machine,
              int optLevel) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder builder(&machine);
  builder.registerModuleAnalyses(mam);
  builder.registerCGSCCAnalyses(cgam);
  builder.registerFunctionAnalyses(fam);
  builder.registerLoopAnalyses(lam);
  builder.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::OptimizationLevel level = optLevel <= 0   ? llvm::OptimizationLevel::O0
                                  : optLevel == 1 ? llvm::OptimizationLevel::O1
                                  : optLevel == 2 ? llvm::OptimizationLevel::O2
                                                  : llvm::OptimizationLevel::O3;
  llvm::ModulePassManager mpm =
      level == llvm::OptimizationLevel::O0
          ? builder.buildO0DefaultPipeline(level)
          : builder.buildPerModuleDefaultPipeline(level);
  mpm.run(module, mam);
}

/// Parses, runs the pipeline and translates to LLVM IR in `llvmContext`.
std::unique_ptr<llvm::Module> toLLVMIR(const char *mlir, const char *pipeline,
                                       llvm::LLVMContext &llvmContext,
                                       std::string &error) {
  Session session;
  OwningOpRef<ModuleOp> module = session.parseAndRun(mlir, pipeline, error);
  if (!module)
    return nullptr;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(*module, llvmContext);
  if (!llvmModule)
    error = "translation to LLVM IR failed (does the pipeline end in the "
            "LLVM dialect?):\n" +
            session.diagnostics;
  return llvmModule;
}

/// Removes a file when it goes out of scope.
struct TempFile {
  llvm::SmallString<128> path;
  ~TempFile() {
    if (!path.empty())
      llvm::sys::fs::remove(path);
  }
};

/// Links `object` into the shared library `output` with the C compiler.
bool linkSharedLibrary(llvm::StringRef object, llvm::StringRef output,
                       llvm::ArrayRef<llvm::StringRef> extraArgs,
                       std::string &error) {
  const char *cc = std::getenv("CC");
  std::string driver = cc && *cc ? cc : "cc";
  llvm::ErrorOr<std::string> program = llvm::sys::findProgramByName(driver);
  if (!program) {
    error = "C compiler '" + driver + "' not found on PATH (set CC)";
    return false;
  }
  TempFile log;
  if (llvm::sys::fs::createTemporaryFile("sparsek-link", "log", log.path)) {
    error = "cannot create a temporary file for the linker's output";
    return false;
  }
  // -Bsymbolic: calls between the library's own functions bind inside it,
  // so an entry point named like a libc function (`select`) is not
  // interposed by libc.
  llvm::SmallVector<llvm::StringRef> args = {
      *program, "-shared", "-Wl,-Bsymbolic", "-o", output, object};
  args.append(extraArgs.begin(), extraArgs.end());
  args.push_back("-lm");
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, log.path.str(),
                                                log.path.str()};
  std::string execError;
  int rc = llvm::sys::ExecuteAndWait(*program, args, std::nullopt, redirects,
                                     /*SecondsToWait=*/0, /*MemoryLimit=*/0,
                                     &execError);
  if (rc == 0)
    return true;
  std::string command = llvm::join(args, " ");
  error = "linking failed: " + command + " (exit " + std::to_string(rc) + ")";
  if (!execError.empty())
    error += ": " + execError;
  if (auto text = llvm::MemoryBuffer::getFile(log.path))
    error += "\n" + (*text)->getBuffer().str();
  return false;
}

/// The module printed as text.
Outcome printed(Operation *op) {
  Outcome outcome{true, "", ""};
  llvm::raw_string_ostream os(outcome.text);
  op->print(os);
  return outcome;
}

Outcome errorOutcome(const llvm::Twine &message) {
  return Outcome{false, "", message.str()};
}

Outcome runPipelineHere(const char *mlir, const char *pipeline) {
  std::string message;
  Session session;
  OwningOpRef<ModuleOp> module = session.parseAndRun(mlir, pipeline, message);
  if (!module)
    return errorOutcome(message);
  return printed(module->getOperation());
}

Outcome translateHere(const char *mlir, const char *pipeline) {
  std::string message;
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> module =
      toLLVMIR(mlir, pipeline, llvmContext, message);
  if (!module)
    return errorOutcome(message);
  Outcome outcome{true, "", ""};
  llvm::raw_string_ostream os(outcome.text);
  module->print(os, nullptr);
  return outcome;
}

/// Compiles and links into `partial` (renamed to the output by the caller).
Outcome compileHere(const char *mlir, const char *pipeline, int optLevel,
                    llvm::ArrayRef<llvm::StringRef> extraArgs,
                    const std::string &partial) {
  std::string message;
  std::unique_ptr<llvm::TargetMachine> machine =
      makeHostMachine(optLevel, message);
  if (!machine)
    return errorOutcome("no target for the host: " + message);

  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> module =
      toLLVMIR(mlir, pipeline, llvmContext, message);
  if (!module)
    return errorOutcome(message);
  module->setTargetTriple(machine->getTargetTriple());
  module->setDataLayout(machine->createDataLayout());
  std::string verifyErrors;
  llvm::raw_string_ostream verifyStream(verifyErrors);
  if (llvm::verifyModule(*module, &verifyStream))
    return errorOutcome("the translated LLVM IR is invalid:\n" + verifyErrors);
  optimize(*module, *machine, optLevel);

  TempFile object;
  int fd;
  if (std::error_code ec = llvm::sys::fs::createTemporaryFile(
          "sparsek-module", "o", fd, object.path))
    return errorOutcome("cannot create a temporary object file: " +
                        ec.message());
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    llvm::legacy::PassManager codegen;
    if (machine->addPassesToEmitFile(codegen, os, nullptr,
                                     llvm::CodeGenFileType::ObjectFile))
      return errorOutcome("the host target cannot emit object files");
    codegen.run(*module);
    os.flush();
    if (os.has_error())
      return errorOutcome("writing " + object.path +
                          " failed: " + os.error().message());
  }
  if (!linkSharedLibrary(object.path, partial, extraArgs, message))
    return errorOutcome(message);
  return Outcome{true, "", ""};
}

/// Hands an Outcome to a C caller: `*out_text` (when asked for) on success,
/// else `*error`.
int deliver(const Outcome &outcome, char **out_text, char **error) {
  if (!outcome.ok)
    return fail(error, outcome.error);
  if (!out_text)
    return 0;
  *out_text = copyString(outcome.text);
  return *out_text ? 0 : fail(error, "out of memory");
}

} // namespace

extern "C" {

const char *sparsek_compiler_version(void) {
  return "SparseK " SPARSEK_VERSION_STRING " (LLVM " LLVM_VERSION_STRING ")";
}

int sparsek_compiler_run_pipeline(const char *mlir, const char *pipeline,
                                  char **out_text, char **error) {
  if (!out_text)
    return fail(error, "out_text must not be null");
  *out_text = nullptr;
  initializeOnce();
  return deliver(runIsolated([&] { return runPipelineHere(mlir, pipeline); }),
                 out_text, error);
}

int sparsek_compiler_translate_to_llvm_ir(const char *mlir,
                                          const char *pipeline, char **out_text,
                                          char **error) {
  if (!out_text)
    return fail(error, "out_text must not be null");
  *out_text = nullptr;
  initializeOnce();
  return deliver(runIsolated([&] { return translateHere(mlir, pipeline); }),
                 out_text, error);
}

int sparsek_compiler_compile_shared_library(const char *mlir,
                                            const char *pipeline,
                                            const char *output_path,
                                            int opt_level, char **error) {
  return sparsek_compiler_compile_shared_library_ex(
      mlir, pipeline, output_path, opt_level, nullptr, 0, error);
}

int sparsek_compiler_compile_shared_library_ex(
    const char *mlir, const char *pipeline, const char *output_path,
    int opt_level, const char *const *link_args, int num_link_args,
    char **error) {
  if (num_link_args < 0 || (num_link_args > 0 && !link_args))
    return fail(error, "link_args must hold num_link_args strings");
  llvm::SmallVector<llvm::StringRef> extraArgs;
  for (int i = 0; i < num_link_args; ++i) {
    if (!link_args[i])
      return fail(error, "link_args[" + llvm::Twine(i) + "] is null");
    extraArgs.push_back(link_args[i]);
  }
  if (!output_path || !*output_path)
    return fail(error, "no output path given");
  if (opt_level < 0 || opt_level > 3)
    return fail(error, "opt_level must be 0..3, got " + llvm::Twine(opt_level));

  // Link next to the destination, then rename: concurrent readers of
  // `output_path` see the old file or the whole new one. The name is made
  // here, so that the partial file of a child that died is removed too.
  initializeOnce();
  static std::atomic<unsigned> calls{0};
  std::string partial = std::string(output_path) + ".tmp" +
                        std::to_string(llvm::sys::Process::getProcessId()) +
                        "." + std::to_string(calls++);
  Outcome outcome = runIsolated([&] {
    return compileHere(mlir, pipeline, opt_level, extraArgs, partial);
  });
  if (!outcome.ok) {
    llvm::sys::fs::remove(partial);
    return deliver(outcome, nullptr, error);
  }
  if (std::error_code ec = llvm::sys::fs::rename(partial, output_path)) {
    llvm::sys::fs::remove(partial);
    return fail(error, "cannot move the library to " +
                           llvm::Twine(output_path) + ": " + ec.message());
  }
  return 0;
}

void sparsek_compiler_free(char *str) { std::free(str); }

} // extern "C"
