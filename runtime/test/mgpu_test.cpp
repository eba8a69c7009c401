// The mgpu* wrappers: never abort (no GPU, bad input), keep the first error,
// and on a GPU load PTX/cubin modules, launch, memset, memcpy and time.
#include "sparsek/runtime/mgpu.h"

#include <gtest/gtest.h>

#ifdef SK_TEST_PTX
#include <cuda_runtime.h>
#endif

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

std::string lastError() {
  char buf[512];
  sk_rt_get_last_error(buf, sizeof(buf));
  return buf;
}

template <int Rank> struct MemRef {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t sizes[Rank];
  int64_t strides[Rank];
};

TEST(MgpuErrors, FirstErrorWinsUntilCleared) {
  sk_rt_clear_error();
  EXPECT_EQ(sk_rt_get_status(), SK_OK);
  EXPECT_EQ(lastError(), "");
  // A null function fails whether or not a GPU is present.
  mgpuLaunchKernel(nullptr, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr, 0);
  sk_status first = sk_rt_get_status();
  std::string firstMessage = lastError();
  EXPECT_NE(first, SK_OK);
  EXPECT_NE(firstMessage.find("mgpuLaunchKernel"), std::string::npos)
      << firstMessage;
  mgpuModuleGetFunction(nullptr, "nothing");
  EXPECT_EQ(lastError(), firstMessage) << "a later error must not overwrite";
  char tiny[4];
  EXPECT_EQ(sk_rt_get_last_error(tiny, sizeof(tiny)), first);
  EXPECT_EQ(std::strlen(tiny), 3u) << "truncated and NUL-terminated";
  sk_rt_clear_error();
  EXPECT_EQ(sk_rt_get_status(), SK_OK);
}

TEST(MgpuErrors, BadDescriptorsAreRejectedNotAsserted) {
  sk_rt_clear_error();
  float data[6] = {};
  // A transposed (non-dense) 2x3 view cannot be registered as one range.
  MemRef<2> transposed{data, data, 0, {2, 3}, {1, 2}};
  mgpuMemHostRegisterMemRef(2, &transposed, 4);
  // A runtime built without CUDA refuses every call up front.
  const sk_status expected =
      SK_TEST_HAVE_CUDA ? SK_ERR_INVALID_ARGUMENT : SK_ERR_UNSUPPORTED;
  EXPECT_EQ(sk_rt_get_status(), expected);
  if (SK_TEST_HAVE_CUDA)
    EXPECT_NE(lastError().find("dense"), std::string::npos) << lastError();
  sk_rt_clear_error();
  int64_t box[6] = {1, 1, 1, 1, 1, 1};
  EXPECT_EQ(mgpuTensorMapEncodeTiledMemref(6, &transposed, 7, 0, 0, 0, 0, box),
            nullptr);
  EXPECT_EQ(sk_rt_get_status(), expected);
  sk_rt_clear_error();
}

TEST(MgpuNoDevice, EverythingFailsSoftly) {
  if (sk_rt_has_device())
    GTEST_SKIP() << "a GPU is present; this checks machines without one";
  sk_rt_clear_error();
  // What generated global constructors do when a model is loaded.
  const char ptx[] = ".version 8.0\n.target sm_90\n.address_size 64\n";
  EXPECT_EQ(mgpuModuleLoadJIT(const_cast<char *>(ptx), 2), nullptr);
  sk_status status = sk_rt_get_status();
  EXPECT_TRUE(status == SK_ERR_NO_DEVICE || status == SK_ERR_UNSUPPORTED)
      << sk_status_name(status);
  EXPECT_NE(lastError().find("mgpuModuleLoadJIT"), std::string::npos)
      << lastError();
  EXPECT_EQ(mgpuModuleLoad(const_cast<char *>(ptx), sizeof(ptx)), nullptr);
  void *stream = mgpuStreamCreate();
  EXPECT_EQ(mgpuMemAlloc(1024, stream, false), nullptr);
  mgpuMemset32(nullptr, 0, 16, stream);
  mgpuStreamSynchronize(stream);
  mgpuStreamDestroy(stream);
  EXPECT_EQ(mgpuEventCreate(), nullptr);
  EXPECT_EQ(sk_rt_init(), status);
  sk_rt_clear_error();
}

TEST(MgpuNoDevice, DeviceStatusWordsAreNullAndReadAsClean) {
  if (sk_rt_has_device())
    GTEST_SKIP() << "a GPU is present; this checks machines without one";
  sk_rt_clear_error();
  int key = 0;
  sk_rt_word_memref word{reinterpret_cast<int32_t *>(&key), nullptr, 7};
  _mlir_ciface_sk_rt_device_status_word(&word,
                                        reinterpret_cast<intptr_t>(&key));
  // Null: the kernels' guard skips the report instead of faulting.
  EXPECT_EQ(word.allocated, nullptr);
  EXPECT_EQ(word.aligned, nullptr);
  EXPECT_EQ(word.offset, 0);
  EXPECT_NE(sk_rt_get_status(), SK_OK);
  sk_rt_clear_error();
  EXPECT_EQ(sk_rt_device_status_read(reinterpret_cast<intptr_t>(&key)), 0);
  sk_rt_device_status_clear(reinterpret_cast<intptr_t>(&key), nullptr);
  sk_rt_clear_error();
}

TEST(MgpuStreams, CallerStreamIsBorrowed) {
  void *torchStream = sk_rt_stream_from_ptr(0x1234);
  EXPECT_EQ(torchStream, reinterpret_cast<void *>(0x1234));
  sk_rt_set_current_stream(torchStream);
  EXPECT_EQ(sk_rt_get_current_stream(), torchStream);
  // Generated code creates "its" stream and destroys it after use: both
  // must resolve to the caller's stream without touching the driver.
  EXPECT_EQ(mgpuStreamCreate(), torchStream);
  sk_rt_clear_error();
  // The synchronization gpu-to-llvm puts after each launch is not a host
  // round trip on the caller's stream (no driver call, so no error here
  // even without a GPU); the caller orders its later work on that stream.
  mgpuStreamSynchronize(torchStream);
  mgpuStreamDestroy(torchStream);
  EXPECT_EQ(sk_rt_get_status(), SK_OK);
  sk_rt_set_current_stream(nullptr);
  EXPECT_EQ(sk_rt_get_current_stream(), nullptr);
}

TEST(MgpuStreams, LentDefaultStreamIsUsedNotReplaced) {
  // torch's default stream is the legacy null stream: generated code must
  // launch on it (a fresh non-blocking stream would not wait for the
  // caller's earlier work on it), and must not destroy it.
  sk_rt_lend_stream(nullptr);
  sk_rt_clear_error();
  EXPECT_EQ(mgpuStreamCreate(), nullptr);
  mgpuStreamDestroy(nullptr);
  EXPECT_EQ(sk_rt_get_status(), SK_OK);
  sk_rt_set_current_stream(nullptr); // back to fresh streams
  EXPECT_EQ(sk_rt_get_current_stream(), nullptr);
}

#ifdef SK_TEST_PTX
std::vector<char> readFile(const char *path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  bytes.push_back('\0'); // PTX is loaded as a C string
  return bytes;
}

class MgpuGpu : public ::testing::Test {
protected:
  void SetUp() override {
    if (!sk_rt_has_device())
      GTEST_SKIP() << "no GPU or driver";
    sk_rt_clear_error();
  }
  void TearDown() override {
    if (!IsSkipped())
      EXPECT_EQ(sk_rt_get_status(), SK_OK) << lastError();
  }
};

TEST_F(MgpuGpu, LoadLaunchMemsetMemcpyEvents) {
  std::vector<char> ptx = readFile(SK_TEST_PTX);
  std::vector<char> cubin = readFile(SK_TEST_CUBIN);
  ASSERT_GT(ptx.size(), 1u) << "missing " << SK_TEST_PTX;
  ASSERT_GT(cubin.size(), 1u) << "missing " << SK_TEST_CUBIN;
  void *jitModule = mgpuModuleLoadJIT(ptx.data(), 3);
  void *binModule = mgpuModuleLoad(cubin.data(), cubin.size() - 1);
  ASSERT_NE(jitModule, nullptr) << lastError();
  ASSERT_NE(binModule, nullptr) << lastError();
  void *addOne = mgpuModuleGetFunction(jitModule, "sk_test_add_one");
  void *addOneBin = mgpuModuleGetFunction(binModule, "sk_test_add_one");
  ASSERT_NE(addOne, nullptr) << lastError();
  ASSERT_NE(addOneBin, nullptr) << lastError();

  const int count = 1000;
  void *stream = mgpuStreamCreate();
  void *device = mgpuMemAlloc(count * 4, stream, false);
  ASSERT_NE(device, nullptr) << lastError();
  float one = 1.0f;
  uint32_t bits;
  std::memcpy(&bits, &one, 4);
  mgpuMemset32(device, bits, count, stream);
  int n = count;
  void *params[] = {&device, &n};
  mgpuLaunchKernel(addOne, 4, 1, 1, 256, 1, 1, 0, stream, params, nullptr, 2);
  // Cluster launch (sm_90): 2-block clusters over the same 4 blocks.
  mgpuLaunchClusterKernel(addOneBin, 2, 1, 1, 4, 1, 1, 256, 1, 1, 0, stream,
                          params, nullptr);
  std::vector<float> host(count);
  mgpuMemcpy(host.data(), device, count * 4, stream);
  mgpuStreamSynchronize(stream);
  ASSERT_EQ(sk_rt_get_status(), SK_OK) << lastError();
  for (int i = 0; i < count; ++i)
    ASSERT_EQ(host[i], 3.0f) << i;

  // 16-bit memset: bf16 1.0 is 0x3f80.
  mgpuMemset16(device, 0x3f80, 2 * count, stream);
  std::vector<uint16_t> halves(2 * count);
  mgpuMemcpy(halves.data(), device, count * 4, stream);
  mgpuStreamSynchronize(stream);
  for (uint16_t h : halves)
    ASSERT_EQ(h, 0x3f80);

  // Events order a second stream after the first; timed events measure.
  void *other = mgpuStreamCreate();
  void *event = mgpuEventCreate();
  void *start = sk_rt_event_create_timed(), *stop = sk_rt_event_create_timed();
  mgpuEventRecord(start, stream);
  mgpuMemset32(device, 0, count, stream);
  mgpuEventRecord(event, stream);
  mgpuStreamWaitEvent(other, event);
  mgpuLaunchKernel(addOne, 4, 1, 1, 256, 1, 1, 0, other, params, nullptr, 2);
  mgpuEventRecord(stop, other);
  mgpuEventSynchronize(stop);
  EXPECT_GE(sk_rt_event_elapsed_ms(start, stop), 0.0f) << lastError();
  mgpuMemcpy(host.data(), device, count * 4, other);
  mgpuStreamSynchronize(other);
  for (int i = 0; i < count; ++i)
    ASSERT_EQ(host[i], 1.0f) << i;

  // 64 KiB of dynamic shared memory needs the opt-in attribute.
  void *bigSmem = mgpuModuleGetFunction(binModule, "sk_test_big_smem");
  const int smemFloats = 16384;
  void *out = mgpuMemAlloc(smemFloats * 4, stream, false);
  int m = smemFloats;
  void *bigParams[] = {&out, &m};
  mgpuLaunchKernel(bigSmem, 1, 1, 1, 256, 1, 1, smemFloats * 4, stream,
                   bigParams, nullptr, 2);
  std::vector<float> reversed(smemFloats);
  mgpuMemcpy(reversed.data(), out, smemFloats * 4, stream);
  mgpuStreamSynchronize(stream);
  ASSERT_EQ(sk_rt_get_status(), SK_OK) << lastError();
  EXPECT_EQ(reversed[0], smemFloats - 1.0f);
  EXPECT_EQ(reversed[smemFloats - 1], 0.0f);

  // Host registration of a dense memref, and a TMA descriptor for it.
  std::vector<float> pinned(64 * 32);
  MemRef<2> desc{pinned.data(), pinned.data(), 0, {64, 32}, {32, 1}};
  mgpuMemHostRegisterMemRef(2, &desc, 4);
  mgpuMemHostUnregisterMemRef(2, &desc, 4);
  MemRef<2> deviceDesc{device, device, 0, {8, 64}, {64, 1}};
  int64_t box[2] = {8, 32};
  void *tma = mgpuTensorMapEncodeTiledMemref(2, &deviceDesc, 7 /*FLOAT32*/, 0,
                                             0, 0, 0, box);
  EXPECT_NE(tma, nullptr) << lastError();
  mgpuMemFree(tma, stream);

  mgpuEventDestroy(event);
  mgpuEventDestroy(start);
  mgpuEventDestroy(stop);
  mgpuMemFree(out, stream);
  mgpuMemFree(device, stream);
  mgpuStreamDestroy(other);
  mgpuStreamDestroy(stream);
  mgpuModuleUnload(jitModule);
  mgpuModuleUnload(binModule);
}

/// The runtime remembers how much dynamic shared memory each function was
/// opted in to: a launch that asks for more opts in again, and a reloaded
/// module's functions (which may reuse the old handles) start afresh.
TEST_F(MgpuGpu, DynamicSharedMemoryOptInsGrowAndLeaveWithTheirModule) {
  std::vector<char> cubin = readFile(SK_TEST_CUBIN);
  ASSERT_GT(cubin.size(), 1u) << "missing " << SK_TEST_CUBIN;
  void *stream = mgpuStreamCreate();
  const int maxFloats = 16384; // 64 KiB: past the 48 KiB default
  void *out = mgpuMemAlloc(maxFloats * 4, stream, false);
  ASSERT_NE(out, nullptr) << lastError();
  std::vector<float> host(maxFloats);
  for (int round = 0; round < 2; ++round) {
    void *module = mgpuModuleLoad(cubin.data(), cubin.size() - 1);
    ASSERT_NE(module, nullptr) << lastError();
    for (int floats : {8192, maxFloats, 8192, maxFloats}) {
      void *fn = mgpuModuleGetFunction(module, "sk_test_big_smem");
      // Every other launch follows another function's lookup, as when a
      // caller keeps the handle: that launch must still be allowed.
      if (floats == 8192)
        mgpuModuleGetFunction(module, "sk_test_add_one");
      int m = floats;
      void *params[] = {&out, &m};
      mgpuLaunchKernel(fn, 1, 1, 1, 256, 1, 1, floats * 4, stream, params,
                       nullptr, 2);
      mgpuMemcpy(host.data(), out, floats * 4, stream);
      mgpuStreamSynchronize(stream);
      ASSERT_EQ(sk_rt_get_status(), SK_OK)
          << "round " << round << ", " << floats << " floats: " << lastError();
      EXPECT_EQ(host[0], floats - 1.0f);
      EXPECT_EQ(host[floats - 1], 0.0f);
    }
    mgpuModuleUnload(module);
  }
  mgpuMemFree(out, stream);
  mgpuStreamDestroy(stream);
}

/// What an entry point's host code does on a lent stream: a temporary
/// buffer, a memset, a kernel, the synchronization gpu-to-llvm inserts after
/// a launch, a copy into the caller's output, the free.
void generatedCodeOnLentStream(void *lent, void *addOne, void *out, int count) {
  sk_rt_lend_stream(lent);
  void *stream = mgpuStreamCreate();
  void *tmp = mgpuMemAlloc(count * 4, stream, false);
  float one = 1.0f;
  uint32_t bits;
  std::memcpy(&bits, &one, 4);
  mgpuMemset32(tmp, bits, count, stream);
  void *params[] = {&tmp, &count};
  mgpuLaunchKernel(addOne, (count + 255) / 256, 1, 1, 256, 1, 1, 0, stream,
                   params, nullptr, 2);
  mgpuStreamSynchronize(stream);
  mgpuMemcpy(out, tmp, count * 4, stream);
  mgpuMemFree(tmp, stream);
  mgpuStreamDestroy(stream);
  sk_rt_set_current_stream(nullptr);
}

TEST_F(MgpuGpu, LentStreamWorkIsStreamOrderedAndCapturable) {
  std::vector<char> cubin = readFile(SK_TEST_CUBIN);
  void *module = mgpuModuleLoad(cubin.data(), cubin.size() - 1);
  ASSERT_NE(module, nullptr) << lastError();
  void *addOne = mgpuModuleGetFunction(module, "sk_test_add_one");
  const int count = 4096;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
            cudaSuccess);
  void *out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, count * 4), cudaSuccess);
  std::vector<float> host(count);
  auto expectTwos = [&](const char *when) {
    ASSERT_EQ(cudaMemcpyAsync(host.data(), out, count * 4,
                              cudaMemcpyDeviceToHost, stream),
              cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    for (int i = 0; i < count; ++i)
      ASSERT_EQ(host[i], 2.0f) << when << " element " << i;
  };

  // Eager: no host synchronization is needed for the result to be right
  // once the caller's stream has run.
  generatedCodeOnLentStream(stream, addOne, out, count);
  ASSERT_EQ(sk_rt_get_status(), SK_OK) << lastError();
  expectTwos("eager");

  // Captured: the temporary becomes an allocation node, nothing syncs.
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
            cudaSuccess);
  generatedCodeOnLentStream(stream, addOne, out, count);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(sk_rt_get_status(), SK_OK) << lastError();
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 3; ++replay) {
    ASSERT_EQ(cudaMemsetAsync(out, 0, count * 4, stream), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    expectTwos("replay");
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaFree(out);
  cudaStreamDestroy(stream);
  mgpuModuleUnload(module);
}

TEST_F(MgpuGpu, DeviceStatusWordsPerLibraryReadWithoutSyncAndClear) {
  int keyA = 0, keyB = 0;
  auto key = [](int &k) { return reinterpret_cast<intptr_t>(&k); };
  sk_rt_word_memref wordA{}, mirrorA{}, wordA2{}, wordB{};
  _mlir_ciface_sk_rt_device_status_word(&wordA, key(keyA));
  _mlir_ciface_sk_rt_device_status_mirror(&mirrorA, key(keyA));
  _mlir_ciface_sk_rt_device_status_word(&wordA2, key(keyA));
  _mlir_ciface_sk_rt_device_status_word(&wordB, key(keyB));
  ASSERT_EQ(sk_rt_get_status(), SK_OK) << lastError();
  ASSERT_NE(wordA.aligned, nullptr);
  ASSERT_NE(mirrorA.aligned, nullptr);
  EXPECT_EQ(wordA.aligned, wordA2.aligned) << "one word per library";
  EXPECT_NE(wordA.aligned, wordB.aligned);
  EXPECT_NE(wordA.aligned, mirrorA.aligned);
  // Fresh words are zero; what a kernel stores in the mirror (device
  // address) is read on the host without synchronizing.
  int32_t got = -1;
  ASSERT_EQ(cudaMemcpy(&got, wordA.aligned, 4, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(got, 0);
  EXPECT_EQ(sk_rt_device_status_read(key(keyA)), 0);
  const int32_t code = 4;
  ASSERT_EQ(cudaMemcpy(wordA.aligned, &code, 4, cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(mirrorA.aligned, &code, 4, cudaMemcpyHostToDevice),
            cudaSuccess);
  EXPECT_EQ(sk_rt_device_status_read(key(keyA)), code);
  EXPECT_EQ(sk_rt_device_status_read(key(keyB)), 0) << "per library";
  sk_rt_device_status_clear(key(keyA), nullptr);
  EXPECT_EQ(sk_rt_device_status_read(key(keyA)), 0);
  ASSERT_EQ(cudaMemcpy(&got, wordA.aligned, 4, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(got, 0) << "the device word is cleared too";
}

TEST_F(MgpuGpu, DriverErrorsNameTheCallAndTheCudaError) {
  std::vector<char> cubin = readFile(SK_TEST_CUBIN);
  void *module = mgpuModuleLoad(cubin.data(), cubin.size() - 1);
  ASSERT_NE(module, nullptr) << lastError();
  EXPECT_EQ(mgpuModuleGetFunction(module, "no_such_kernel"), nullptr);
  EXPECT_EQ(sk_rt_get_status(), SK_ERR_CUDA);
  EXPECT_NE(lastError().find("cuModuleGetFunction"), std::string::npos);
  EXPECT_NE(lastError().find("CUDA_ERROR_NOT_FOUND"), std::string::npos)
      << lastError();
  sk_rt_clear_error();
  mgpuModuleUnload(module);
}
#endif // SK_TEST_PTX

} // namespace
