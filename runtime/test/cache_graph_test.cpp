// A decode step of the CUDA cache captured once in a CUDA graph and replayed
// step after step stays equal to the CPU cache appended eagerly: the step's
// launches carry no per-step host state. Skips where there is no GPU.
#include "test_util.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace sparsek::test;

namespace {

TEST(GpuCacheGraph, CapturedDecodeStepReplaysLikeEagerAppends) {
  if (!sk_rt_has_device())
    GTEST_SKIP() << "no GPU or driver";
  // Narrow scores force evictions, rescans and tau walks: the heavy kernel's
  // worklist is used at most steps, on alternating parities.
  const int32_t heads = 2, k = 8, w = 4, dim = 16, seqs = 3;
  const int64_t tokens = 300;
  sk_cache_config cfg =
      makeConfig(SK_BACKEND_CPU, heads, k, w, dim, SK_DTYPE_BF16, seqs, 4096);
  sk_kv_shape shape = shapeOf(cfg);
  sk_cache *cpu = nullptr, *gpu = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &cpu), SK_OK) << sk_cache_last_error();
  cfg.backend = SK_BACKEND_CUDA;
  ASSERT_EQ(sk_cache_create(&cfg, &gpu), SK_OK) << sk_cache_last_error();
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < seqs; ++i) {
    int32_t a = -1, b = -1;
    ASSERT_EQ(sk_cache_alloc_seq(cpu, &a), SK_OK);
    ASSERT_EQ(sk_cache_alloc_seq(gpu, &b), SK_OK);
    ASSERT_EQ(a, b);
    ids.push_back(a);
  }
  std::vector<std::vector<float>> streams;
  const Scores kinds[] = {Scores::Narrow, Scores::Quantized, Scores::Normal};
  for (int32_t i = 0; i < seqs * heads; ++i)
    streams.push_back(makeScores(kinds[i % 3], tokens, 900 + i));

  // The step's inputs live at fixed device addresses, refilled before each
  // replay, as a serving loop does with a captured graph.
  TokenBatch first = makeTokenBatch(cfg, ids, streams, 0);
  void *keys = nullptr, *values = nullptr, *scores = nullptr;
  ASSERT_EQ(cudaMalloc(&keys, first.keys.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&values, first.values.size()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&scores, first.scores.size() * 4), cudaSuccess);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
            cudaSuccess);

  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
            cudaSuccess);
  sk_status captured =
      sk_cache_append_tokens(gpu, 0, &shape, seqs, ids.data(), keys, values,
                             static_cast<float *>(scores), stream);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(captured, SK_OK) << sk_cache_last_error();
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  for (int64_t p = 0; p < tokens; ++p) {
    TokenBatch b = makeTokenBatch(cfg, ids, streams, p);
    ASSERT_EQ(cudaMemcpyAsync(keys, b.keys.data(), b.keys.size(),
                              cudaMemcpyHostToDevice, stream),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(values, b.values.data(), b.values.size(),
                              cudaMemcpyHostToDevice, stream),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpyAsync(scores, b.scores.data(), b.scores.size() * 4,
                              cudaMemcpyHostToDevice, stream),
              cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    ASSERT_EQ(sk_cache_append_tokens(cpu, 0, &shape, seqs, ids.data(),
                                     b.keys.data(), b.values.data(),
                                     b.scores.data(), nullptr),
              SK_OK);
    if (p % 23 == 0 || p + 1 == tokens) {
      ASSERT_EQ(sk_cache_check_device_error(gpu, stream), SK_OK)
          << sk_cache_last_error();
      Snapshot c = snapshot(cpu, 0), g = snapshot(gpu, 0);
      ASSERT_EQ(c.pos, g.pos) << "position " << p;
      ASSERT_EQ(c.poolCount, g.poolCount) << "position " << p;
      ASSERT_EQ(c.slotPos, g.slotPos) << "position " << p;
      ASSERT_EQ(
          0, std::memcmp(c.scores.data(), g.scores.data(), c.scores.size() * 4))
          << "position " << p;
      ASSERT_EQ(c.keys, g.keys) << "position " << p;
      ASSERT_EQ(c.values, g.values) << "position " << p;
      // tau is -inf while a pool holds at most k scores: equal infinities
      // are equal (ASSERT_NEAR would subtract them and get NaN).
      for (size_t r = 0; r < c.tau.size(); ++r) {
        if (std::isinf(c.tau[r]) || std::isinf(g.tau[r]))
          ASSERT_EQ(c.tau[r], g.tau[r]) << "position " << p << " row " << r;
        else
          ASSERT_NEAR(c.tau[r], g.tau[r],
                      1e-6f * std::max(1.0f, std::fabs(c.tau[r])))
              << "position " << p << " row " << r;
      }
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  cudaFree(keys);
  cudaFree(values);
  cudaFree(scores);
  sk_cache_destroy(cpu);
  sk_cache_destroy(gpu);
}

} // namespace
