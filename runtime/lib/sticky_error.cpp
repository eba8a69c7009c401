// Sticky error storage behind sk_rt_get_last_error / sk_rt_clear_error.
#include "sticky_error.h"

#include "sparsek/runtime/mgpu.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace {
std::mutex errorMutex;
sk_status errorStatus = SK_OK;
char errorMessage[512] = "";
} // namespace

void sparsek::rt::recordError(sk_status status, const char *format, ...) {
  std::lock_guard<std::mutex> lock(errorMutex);
  if (errorStatus != SK_OK)
    return;
  errorStatus = status;
  va_list args;
  va_start(args, format);
  std::vsnprintf(errorMessage, sizeof(errorMessage), format, args);
  va_end(args);
}

extern "C" sk_status sk_rt_get_status(void) {
  std::lock_guard<std::mutex> lock(errorMutex);
  return errorStatus;
}

extern "C" sk_status sk_rt_get_last_error(char *buf, size_t size) {
  std::lock_guard<std::mutex> lock(errorMutex);
  if (buf && size > 0)
    std::snprintf(buf, size, "%s", errorMessage);
  return errorStatus;
}

extern "C" void sk_rt_clear_error(void) {
  std::lock_guard<std::mutex> lock(errorMutex);
  errorStatus = SK_OK;
  errorMessage[0] = '\0';
}

extern "C" const char *sk_status_name(sk_status status) {
  switch (status) {
  case SK_OK:
    return "SK_OK";
  case SK_ERR_INVALID_ARGUMENT:
    return "SK_ERR_INVALID_ARGUMENT";
  case SK_ERR_BAD_HANDLE:
    return "SK_ERR_BAD_HANDLE";
  case SK_ERR_OUT_OF_SLOTS:
    return "SK_ERR_OUT_OF_SLOTS";
  case SK_ERR_INVALID_SCORE:
    return "SK_ERR_INVALID_SCORE";
  case SK_ERR_OUT_OF_MEMORY:
    return "SK_ERR_OUT_OF_MEMORY";
  case SK_ERR_CUDA:
    return "SK_ERR_CUDA";
  case SK_ERR_NO_DEVICE:
    return "SK_ERR_NO_DEVICE";
  case SK_ERR_UNSUPPORTED:
    return "SK_ERR_UNSUPPORTED";
  }
  return "SK_ERR_UNKNOWN";
}
