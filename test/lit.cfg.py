# lit configuration of the SparseK test suite (FileCheck, -verify-diagnostics
# and, under Integration/, tests that execute compiled code).
import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "SPARSEK"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.sparsek_obj_root, "test")
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]

# Fail on checks whose variables leak across CHECK-LABELs.
config.environment["FILECHECK_OPTS"] = "-enable-var-scope"
config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%sparsek_src_root", config.sparsek_src_root))

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(
    [ToolSubst("sparsek-opt", unresolved="fatal"),
     ToolSubst("sparsek-compile", unresolved="fatal"),
     ToolSubst("mlir-opt", unresolved="fatal")],
    [config.sparsek_tools_dir, config.llvm_tools_dir],
)

# MLIR's CPU runner libraries, for tests that execute through mlir-runner.
config.substitutions.append(("%mlir_runner_utils", os.path.join(
    config.llvm_tools_dir, "..", "lib", "libmlir_runner_utils.so")))
config.substitutions.append(("%mlir_c_runner_utils", os.path.join(
    config.llvm_tools_dir, "..", "lib", "libmlir_c_runner_utils.so")))

# Debian's stock mlir-opt with our dialect + pass plugin (lib/Plugin): tests
# that run it show the dialect, passes and pipelines work in a tool we do not
# build. Passes are named through -p/--pass-pipeline there: pass flags such as
# --sparsek-cpu-pipeline exist only for passes registered before the tool
# parses its command line, and plugins are loaded during that parse.
_plugin = os.path.join(config.sparsek_lib_dir, "SparseKPlugin.so")
config.substitutions.append(
    ("%mlir-opt-sparsek",
     f"{os.path.join(config.llvm_tools_dir, 'mlir-opt')} "
     f"--load-dialect-plugin={_plugin} --load-pass-plugin={_plugin}"))
config.substitutions.append(("%sparsek_plugin", _plugin))

# The CUDA toolkit's ptxas turns PTX into sm_90 binaries (no GPU needed).
_cuda_bin = os.environ.get("CUDA_HOME", "/usr/local/cuda") + "/bin"
if os.path.exists(os.path.join(_cuda_bin, "ptxas")):
    config.available_features.add("ptxas")
    llvm_config.with_environment("PATH", _cuda_bin, append_path=True)
