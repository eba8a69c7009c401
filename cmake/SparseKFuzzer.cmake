# SPARSEK_ENABLE_FUZZER: everything of ours in this build tree is compiled
# with libFuzzer coverage and ASan. Debian's libMLIR.so/libLLVM.so stay as
# they are (gcc, no sanitizer); the harness links them shared.
include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address")
check_cxx_source_compiles([[
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *, size_t) { return 0; }
]] SPARSEK_HAVE_LIBFUZZER)
unset(CMAKE_REQUIRED_FLAGS)
if(NOT SPARSEK_HAVE_LIBFUZZER)
  message(FATAL_ERROR "SPARSEK_ENABLE_FUZZER needs a compiler with libFuzzer "
                      "(clang with -fsanitize=fuzzer), not ${CMAKE_CXX_COMPILER}")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer)
add_link_options(-fsanitize=address)
