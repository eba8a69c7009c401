// CUDA cache == CPU cache: pool, window and K/V bit for bit, tau within
// 1e-6 relative, for token batches, chunks and long prompts (the parallel
// chunk path); device-side score errors.
// Skips where there is no GPU.
#include "test_util.h"

#include <gtest/gtest.h>

#include <memory>

using namespace sparsek::test;

namespace {

/// Device copy of a host buffer, freed with the object.
struct DeviceBuffer {
  void *ptr = nullptr;
  DeviceBuffer(const void *host, size_t bytes) {
    ptr = mgpuMemAlloc(bytes, nullptr, false);
    mgpuMemcpy(ptr, const_cast<void *>(host), bytes, nullptr);
  }
  ~DeviceBuffer() { mgpuMemFree(ptr, nullptr); }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
};

struct DeviceBatch {
  DeviceBuffer keys, values, scores;
  explicit DeviceBatch(const TokenBatch &b)
      : keys(b.keys.data(), b.keys.size()),
        values(b.values.data(), b.values.size()),
        scores(b.scores.data(), b.scores.size() * 4) {}
};

struct GpuCase {
  const char *name;
  int32_t heads, k, w, dim;
  sk_dtype dtype;
  int32_t seqs;
  int64_t tokens;
  int32_t capacity;
};

// Short names in test listings instead of gtest's byte dump.
void PrintTo(const GpuCase &c, std::ostream *os) { *os << c.name; }

std::vector<std::vector<float>> makeStreams(const GpuCase &c) {
  std::vector<std::vector<float>> streams;
  const Scores kinds[] = {Scores::Normal, Scores::Quantized, Scores::Masked,
                          Scores::Narrow};
  for (int32_t i = 0; i < c.seqs * c.heads; ++i)
    streams.push_back(makeScores(kinds[i % 4], c.tokens, 300 + i));
  return streams;
}

void expectSame(const Snapshot &cpu, const Snapshot &gpu, const char *when) {
  ASSERT_EQ(cpu.pos, gpu.pos) << when;
  ASSERT_EQ(cpu.poolCount, gpu.poolCount) << when;
  ASSERT_EQ(cpu.slotPos, gpu.slotPos) << when;
  ASSERT_EQ(0, std::memcmp(cpu.scores.data(), gpu.scores.data(),
                           cpu.scores.size() * 4))
      << when;
  ASSERT_EQ(cpu.keys, gpu.keys) << when;
  ASSERT_EQ(cpu.values, gpu.values) << when;
  for (size_t r = 0; r < cpu.tau.size(); ++r) {
    float a = cpu.tau[r], b = gpu.tau[r];
    if (std::isinf(a) || std::isinf(b))
      ASSERT_EQ(a, b) << when << " row " << r;
    else
      ASSERT_LE(std::fabs(a - b), 1e-6f * std::max(1.0f, std::fabs(a)))
          << when << " row " << r;
  }
}

struct CachePair {
  sk_cache *cpu = nullptr, *gpu = nullptr;
  std::vector<int32_t> ids;
  CachePair(sk_cache_config cfg) {
    cfg.backend = SK_BACKEND_CPU;
    EXPECT_EQ(sk_cache_create(&cfg, &cpu), SK_OK) << sk_cache_last_error();
    cfg.backend = SK_BACKEND_CUDA;
    EXPECT_EQ(sk_cache_create(&cfg, &gpu), SK_OK) << sk_cache_last_error();
    for (int32_t i = 0; i < cfg.max_seqs; ++i) {
      int32_t a = -1, b = -1;
      EXPECT_EQ(sk_cache_alloc_seq(cpu, &a), SK_OK);
      EXPECT_EQ(sk_cache_alloc_seq(gpu, &b), SK_OK);
      EXPECT_EQ(a, b);
      ids.push_back(a);
    }
  }
  ~CachePair() {
    sk_cache_destroy(cpu);
    sk_cache_destroy(gpu);
  }
};

/// A CPU and a CUDA cache of the case's shape, with every sequence
/// allocated in both, and the case's score streams.
class GpuCache : public ::testing::TestWithParam<GpuCase> {
protected:
  void SetUp() override {
    if (!sk_rt_has_device())
      GTEST_SKIP() << "no GPU or driver";
    const GpuCase &tc = GetParam();
    cfg = makeConfig(SK_BACKEND_CUDA, tc.heads, tc.k, tc.w, tc.dim, tc.dtype,
                     tc.seqs, tc.capacity);
    shape = shapeOf(cfg);
    caches = std::make_unique<CachePair>(cfg);
    streams = makeStreams(tc);
  }

  /// The whole stream appended to the CPU cache token by token: what the
  /// bulk appends on the GPU must reproduce.
  void appendTokensOnCpu() {
    const GpuCase &tc = GetParam();
    for (int64_t p = 0; p < tc.tokens; ++p) {
      TokenBatch b = makeTokenBatch(cfg, caches->ids, streams, p);
      ASSERT_EQ(sk_cache_append_tokens(
                    caches->cpu, 0, &shape, tc.seqs, caches->ids.data(),
                    b.keys.data(), b.values.data(), b.scores.data(), nullptr),
                SK_OK);
    }
  }

  sk_cache_config cfg;
  sk_kv_shape shape;
  std::unique_ptr<CachePair> caches;
  std::vector<std::vector<float>> streams;
};

TEST_P(GpuCache, TokenBatchesMatchCpu) {
  const GpuCase &tc = GetParam();
  for (int64_t p = 0; p < tc.tokens; ++p) {
    TokenBatch b = makeTokenBatch(cfg, caches->ids, streams, p);
    DeviceBatch d(b);
    ASSERT_EQ(sk_cache_append_tokens(caches->cpu, 0, &shape, tc.seqs,
                                     caches->ids.data(), b.keys.data(),
                                     b.values.data(), b.scores.data(), nullptr),
              SK_OK);
    ASSERT_EQ(
        sk_cache_append_tokens(caches->gpu, 0, &shape, tc.seqs,
                               caches->ids.data(), d.keys.ptr, d.values.ptr,
                               static_cast<float *>(d.scores.ptr), nullptr),
        SK_OK)
        << sk_cache_last_error();
    if (p % 97 == 0 || p + 1 == tc.tokens) {
      ASSERT_EQ(sk_cache_check_device_error(caches->gpu, nullptr), SK_OK)
          << sk_cache_last_error();
      std::string when = "after position " + std::to_string(p);
      expectSame(snapshot(caches->cpu, 0), snapshot(caches->gpu, 0),
                 when.c_str());
    }
  }
  for (int32_t seq : caches->ids) {
    int32_t a = -1, b = -1;
    ASSERT_EQ(sk_cache_seq_is_approximate(caches->cpu, seq, &a), SK_OK);
    ASSERT_EQ(sk_cache_seq_is_approximate(caches->gpu, seq, &b), SK_OK);
    EXPECT_EQ(a, b) << "seq " << seq;
  }
}

TEST_P(GpuCache, ChunksMatchCpuTokens) {
  const GpuCase &tc = GetParam();
  ASSERT_NO_FATAL_FAILURE(appendTokensOnCpu());
  // Each sequence gets its stream in chunks of its own sizes: shorter and
  // longer than the window, the first one a whole "prompt".
  for (int32_t seq : caches->ids) {
    int64_t start = 0, size = tc.tokens / 2 + seq;
    while (start < tc.tokens) {
      int64_t count = std::min(size, tc.tokens - start);
      TokenBatch c = makeChunk(cfg, seq, streams, start, count);
      DeviceBatch d(c);
      ASSERT_EQ(sk_cache_append_chunk(
                    caches->gpu, 0, &shape, seq, count, d.keys.ptr,
                    d.values.ptr, static_cast<float *>(d.scores.ptr), nullptr),
                SK_OK)
          << sk_cache_last_error();
      start += count;
      size = 1 + (size * 7 + seq) % (2 * tc.w + 5);
    }
  }
  ASSERT_EQ(sk_cache_check_device_error(caches->gpu, nullptr), SK_OK)
      << sk_cache_last_error();
  expectSame(snapshot(caches->cpu, 0), snapshot(caches->gpu, 0), "chunks");
}

// Packed prompts of different lengths (0, 1, 17, half the stream, ...) in
// one sk_cache_append_varlen call each, then the rest in a second one,
// against token appends on the CPU.
TEST_P(GpuCache, VarlenMatchesCpuTokens) {
  const GpuCase &tc = GetParam();
  ASSERT_NO_FATAL_FAILURE(appendTokensOnCpu());
  const int64_t lengths[] = {0, 1, 17, tc.tokens / 2, 3 * tc.w + 1};
  std::vector<int64_t> zero(tc.seqs, 0), first(tc.seqs), rest(tc.seqs);
  for (int32_t i = 0; i < tc.seqs; ++i) {
    first[i] = std::min<int64_t>(lengths[i % 5], tc.tokens);
    rest[i] = tc.tokens - first[i];
  }
  for (int round = 0; round < 2; ++round) {
    VarlenBatch v = makeVarlen(cfg, caches->ids, streams, round ? first : zero,
                               round ? rest : first);
    DeviceBatch d(v);
    ASSERT_EQ(sk_cache_append_varlen(
                  caches->gpu, 0, &shape, tc.seqs, caches->ids.data(),
                  v.offsets.data(), d.keys.ptr, d.values.ptr,
                  static_cast<float *>(d.scores.ptr), nullptr),
              SK_OK)
        << sk_cache_last_error();
  }
  ASSERT_EQ(sk_cache_check_device_error(caches->gpu, nullptr), SK_OK)
      << sk_cache_last_error();
  expectSame(snapshot(caches->cpu, 0), snapshot(caches->gpu, 0), "varlen");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GpuCache,
    ::testing::Values(
        GpuCase{"small", 4, 32, 8, 64, SK_DTYPE_BF16, 8, 700, 4096},
        GpuCase{"large_k", 2, 512, 64, 128, SK_DTYPE_F16, 4, 3000, 8192},
        GpuCase{"k0", 2, 0, 16, 32, SK_DTYPE_F32, 3, 200, 0},
        GpuCase{"w0", 2, 16, 0, 32, SK_DTYPE_F32, 3, 400, 1024},
        GpuCase{"overflow", 2, 8, 4, 16, SK_DTYPE_BF16, 4, 600, 12}),
    [](const ::testing::TestParamInfo<GpuCase> &info) {
      return std::string(info.param.name);
    });

// --- Long chunks (the parallel path: at least 64 tokens) -------------------

struct PromptCase {
  const char *name;
  int32_t heads, k, w, dim;
  sk_dtype dtype;
  int64_t tokens;
  int32_t capacity;
};

void PrintTo(const PromptCase &c, std::ostream *os) { *os << c.name; }

class GpuPrompt : public ::testing::TestWithParam<PromptCase> {
protected:
  void SetUp() override {
    if (!sk_rt_has_device())
      GTEST_SKIP() << "no GPU or driver";
  }
};

/// Six sequences, each head with its own kind of stream: ties, -inf,
/// narrow, rising and falling scores.
constexpr int32_t kPromptSeqs = 6;

std::vector<std::vector<float>> makePromptStreams(const PromptCase &c,
                                                  int64_t tokens) {
  const Scores kinds[] = {Scores::Normal, Scores::Quantized, Scores::Masked,
                          Scores::Narrow, Scores::Rising,    Scores::Falling};
  std::vector<std::vector<float>> streams;
  for (int32_t i = 0; i < kPromptSeqs * c.heads; ++i)
    streams.push_back(
        makeScores(kinds[(i / c.heads + i) % 6], tokens, 900 + i));
  return streams;
}

/// Appends positions [from, to) of every sequence to the CPU cache, one
/// token per call.
void cpuTokens(CachePair &caches, const sk_cache_config &cfg,
               const std::vector<std::vector<float>> &streams, int64_t from,
               int64_t to) {
  sk_kv_shape shape = shapeOf(cfg);
  for (int64_t p = from; p < to; ++p) {
    TokenBatch b = makeTokenBatch(cfg, caches.ids, streams, p);
    ASSERT_EQ(sk_cache_append_tokens(caches.cpu, 0, &shape, kPromptSeqs,
                                     caches.ids.data(), b.keys.data(),
                                     b.values.data(), b.scores.data(), nullptr),
              SK_OK);
  }
}

/// Decode steps on both caches after the prompts: the state a chunk leaves
/// (weakest pool entry, tau walk) must carry on exactly.
void decodeBoth(CachePair &caches, const sk_cache_config &cfg,
                const std::vector<std::vector<float>> &streams, int64_t from,
                int64_t to) {
  sk_kv_shape shape = shapeOf(cfg);
  for (int64_t p = from; p < to; ++p) {
    TokenBatch b = makeTokenBatch(cfg, caches.ids, streams, p);
    DeviceBatch d(b);
    ASSERT_EQ(sk_cache_append_tokens(caches.cpu, 0, &shape, kPromptSeqs,
                                     caches.ids.data(), b.keys.data(),
                                     b.values.data(), b.scores.data(), nullptr),
              SK_OK);
    ASSERT_EQ(
        sk_cache_append_tokens(caches.gpu, 0, &shape, kPromptSeqs,
                               caches.ids.data(), d.keys.ptr, d.values.ptr,
                               static_cast<float *>(d.scores.ptr), nullptr),
        SK_OK)
        << sk_cache_last_error();
  }
}

void expectSameApprox(CachePair &caches) {
  for (int32_t seq : caches.ids) {
    int32_t a = -1, b = -1;
    ASSERT_EQ(sk_cache_seq_is_approximate(caches.cpu, seq, &a), SK_OK);
    ASSERT_EQ(sk_cache_seq_is_approximate(caches.gpu, seq, &b), SK_OK);
    EXPECT_EQ(a, b) << "seq " << seq;
  }
}

// Prompts in chunks: one whole prompt; a long chunk after a partly filled
// sequence; short (token walk) and long chunks mixed; chunks longer than
// k + w and shorter than w. Then decode steps on both caches.
TEST_P(GpuPrompt, LongChunksMatchCpuTokens) {
  const PromptCase &tc = GetParam();
  sk_cache_config cfg = makeConfig(SK_BACKEND_CUDA, tc.heads, tc.k, tc.w,
                                   tc.dim, tc.dtype, kPromptSeqs, tc.capacity);
  sk_kv_shape shape = shapeOf(cfg);
  CachePair caches(cfg);
  const int64_t decode = 300, total = tc.tokens + decode;
  auto streams = makePromptStreams(tc, total);
  cpuTokens(caches, cfg, streams, 0, tc.tokens);
  const int64_t T = tc.tokens;
  const std::vector<std::vector<int64_t>> schedules = {
      {T},
      {3000, 5000, T - 8000},
      {100, 70, T - 170},
      {T / 3, 64, 63, T - T / 3 - 127},
      {tc.k + tc.w + 1, T - tc.k - tc.w - 1},
      {5000, T - 5000}};
  for (int32_t i = 0; i < kPromptSeqs; ++i) {
    int64_t start = 0;
    for (int64_t count : schedules[i]) {
      ASSERT_GT(count, 0);
      TokenBatch c = makeChunk(cfg, caches.ids[i], streams, start, count);
      DeviceBatch d(c);
      ASSERT_EQ(sk_cache_append_chunk(
                    caches.gpu, 0, &shape, caches.ids[i], count, d.keys.ptr,
                    d.values.ptr, static_cast<float *>(d.scores.ptr), nullptr),
                SK_OK)
          << sk_cache_last_error();
      start += count;
    }
    ASSERT_EQ(start, T);
  }
  ASSERT_EQ(sk_cache_check_device_error(caches.gpu, nullptr), SK_OK)
      << sk_cache_last_error();
  expectSame(snapshot(caches.cpu, 0), snapshot(caches.gpu, 0), "prompts");
  expectSameApprox(caches);
  decodeBoth(caches, cfg, streams, T, total);
  ASSERT_EQ(sk_cache_check_device_error(caches.gpu, nullptr), SK_OK)
      << sk_cache_last_error();
  expectSame(snapshot(caches.cpu, 0), snapshot(caches.gpu, 0), "decode");
  expectSameApprox(caches);
}

// Packed prompts of different lengths in one call (short and long ones go
// to different launches), then the rest in a second call.
TEST_P(GpuPrompt, LongVarlenMatchesCpuTokens) {
  const PromptCase &tc = GetParam();
  sk_cache_config cfg = makeConfig(SK_BACKEND_CUDA, tc.heads, tc.k, tc.w,
                                   tc.dim, tc.dtype, kPromptSeqs, tc.capacity);
  sk_kv_shape shape = shapeOf(cfg);
  CachePair caches(cfg);
  auto streams = makePromptStreams(tc, tc.tokens);
  cpuTokens(caches, cfg, streams, 0, tc.tokens);
  const int64_t T = tc.tokens;
  const int64_t lengths[kPromptSeqs] = {T, 5000, 63, 64, 0, T / 2};
  std::vector<int64_t> zero(kPromptSeqs, 0), first(kPromptSeqs),
      rest(kPromptSeqs);
  for (int32_t i = 0; i < kPromptSeqs; ++i) {
    first[i] = std::min(lengths[i], T);
    rest[i] = T - first[i];
  }
  for (int round = 0; round < 2; ++round) {
    VarlenBatch v = makeVarlen(cfg, caches.ids, streams, round ? first : zero,
                               round ? rest : first);
    DeviceBatch d(v);
    ASSERT_EQ(sk_cache_append_varlen(
                  caches.gpu, 0, &shape, kPromptSeqs, caches.ids.data(),
                  v.offsets.data(), d.keys.ptr, d.values.ptr,
                  static_cast<float *>(d.scores.ptr), nullptr),
              SK_OK)
        << sk_cache_last_error();
  }
  ASSERT_EQ(sk_cache_check_device_error(caches.gpu, nullptr), SK_OK)
      << sk_cache_last_error();
  expectSame(snapshot(caches.cpu, 0), snapshot(caches.gpu, 0), "varlen");
  expectSameApprox(caches);
}

INSTANTIATE_TEST_SUITE_P(
    Prompts, GpuPrompt,
    ::testing::Values(
        // The benchmark's shape (fewer heads), 40000-token prompts.
        PromptCase{"k2048_w512", 2, 2048, 512, 128, SK_DTYPE_BF16, 40000,
                   4 * 2048 + 64},
        PromptCase{"k0", 2, 0, 64, 32, SK_DTYPE_F32, 9000, 0},
        PromptCase{"w0", 2, 64, 0, 32, SK_DTYPE_F16, 9000, 1024},
        PromptCase{"k1", 1, 1, 3, 16, SK_DTYPE_BF16, 9000, 2},
        // Tight score capacity: tau overflows (approximate) for some heads.
        PromptCase{"small_capacity", 2, 32, 16, 16, SK_DTYPE_BF16, 9000, 48},
        // The largest pool of the parallel path, and one past it.
        PromptCase{"k3072", 1, 3072, 100, 16, SK_DTYPE_F32, 12000, 16384},
        PromptCase{"k3073", 1, 3073, 100, 16, SK_DTYPE_F32, 12000, 16384}),
    [](const ::testing::TestParamInfo<PromptCase> &info) {
      return std::string(info.param.name);
    });

// An invalid score in a long chunk: that sequence is left unchanged, the
// others of the same varlen call proceed.
TEST(GpuCacheErrors, LongChunkScoreErrorsLeaveTheSequenceUnchanged) {
  if (!sk_rt_has_device())
    GTEST_SKIP() << "no GPU or driver";
  sk_cache_config cfg =
      makeConfig(SK_BACKEND_CUDA, 2, 16, 8, 16, SK_DTYPE_BF16, 3, 256);
  sk_kv_shape shape = shapeOf(cfg);
  CachePair caches(cfg);
  std::vector<std::vector<float>> streams;
  for (int i = 0; i < 6; ++i)
    streams.push_back(makeScores(Scores::Normal, 1000, 80 + i));
  VarlenBatch v =
      makeVarlen(cfg, caches.ids, streams, {0, 0, 0}, {300, 300, 300});
  v.scores[(300 + 200) * 2 + 1] = NAN; // sequence 1, token 200, head 1
  DeviceBatch d(v);
  Snapshot before = snapshot(caches.gpu, 0);
  ASSERT_EQ(sk_cache_append_varlen(caches.gpu, 0, &shape, 3, caches.ids.data(),
                                   v.offsets.data(), d.keys.ptr, d.values.ptr,
                                   static_cast<float *>(d.scores.ptr), nullptr),
            SK_OK);
  EXPECT_EQ(sk_cache_check_device_error(caches.gpu, nullptr),
            SK_ERR_INVALID_SCORE);
  std::string message = sk_cache_last_error();
  EXPECT_NE(message.find("sequence 1"), std::string::npos) << message;
  Snapshot after = snapshot(caches.gpu, 0);
  EXPECT_EQ(after.pos[0], 299);
  EXPECT_EQ(after.pos[1], -1);
  EXPECT_EQ(after.pos[2], 299);
  const size_t perSeq = 2 * (16 + 8);
  for (size_t i = perSeq; i < 2 * perSeq; ++i)
    EXPECT_EQ(after.slotPos[i], before.slotPos[i]);
  // The same tokens once more without the NaN: sequence 1 then matches the
  // CPU cache, as if the failed call had not happened.
  TokenBatch c = makeChunk(cfg, caches.ids[1], streams, 0, 300);
  DeviceBatch dc(c);
  ASSERT_EQ(sk_cache_append_chunk(caches.gpu, 0, &shape, caches.ids[1], 300,
                                  dc.keys.ptr, dc.values.ptr,
                                  static_cast<float *>(dc.scores.ptr), nullptr),
            SK_OK);
  for (int64_t p = 0; p < 300; ++p) {
    TokenBatch b = makeTokenBatch(cfg, caches.ids, streams, p);
    ASSERT_EQ(sk_cache_append_tokens(caches.cpu, 0, &shape, 3,
                                     caches.ids.data(), b.keys.data(),
                                     b.values.data(), b.scores.data(), nullptr),
              SK_OK);
  }
  ASSERT_EQ(sk_cache_check_device_error(caches.gpu, nullptr), SK_OK);
  expectSame(snapshot(caches.cpu, 0), snapshot(caches.gpu, 0), "after retry");
}

// A NaN reaches the device: the call itself succeeds (no host sync), the
// next error check reports it, its sequence is unchanged, the others moved.
TEST(GpuCacheErrors, DeviceScoreErrorsAreStickyAndLocal) {
  if (!sk_rt_has_device())
    GTEST_SKIP() << "no GPU or driver";
  sk_cache_config cfg =
      makeConfig(SK_BACKEND_CUDA, 2, 4, 2, 16, SK_DTYPE_BF16, 3, 64);
  sk_kv_shape shape = shapeOf(cfg);
  CachePair caches(cfg);
  std::vector<std::vector<float>> streams;
  for (int i = 0; i < 6; ++i)
    streams.push_back(makeScores(Scores::Normal, 40, 70 + i));
  for (int64_t p = 0; p < 30; ++p) {
    TokenBatch b = makeTokenBatch(cfg, caches.ids, streams, p);
    DeviceBatch d(b);
    ASSERT_EQ(sk_cache_append_tokens(
                  caches.gpu, 0, &shape, 3, caches.ids.data(), d.keys.ptr,
                  d.values.ptr, static_cast<float *>(d.scores.ptr), nullptr),
              SK_OK);
  }
  Snapshot before = snapshot(caches.gpu, 0);
  TokenBatch b = makeTokenBatch(cfg, caches.ids, streams, 30);
  b.scores[1 * 2 + 1] = NAN; // sequence 1, head 1
  DeviceBatch d(b);
  ASSERT_EQ(sk_cache_append_tokens(caches.gpu, 0, &shape, 3, caches.ids.data(),
                                   d.keys.ptr, d.values.ptr,
                                   static_cast<float *>(d.scores.ptr), nullptr),
            SK_OK);
  EXPECT_EQ(sk_cache_check_device_error(caches.gpu, nullptr),
            SK_ERR_INVALID_SCORE);
  std::string message = sk_cache_last_error();
  EXPECT_NE(message.find("sequence 1"), std::string::npos) << message;
  EXPECT_EQ(sk_cache_check_device_error(caches.gpu, nullptr), SK_OK)
      << "reading the error clears it";
  Snapshot after = snapshot(caches.gpu, 0);
  EXPECT_EQ(after.pos[1], before.pos[1]);
  EXPECT_EQ(after.pos[0], before.pos[0] + 1);
  EXPECT_EQ(after.pos[2], before.pos[2] + 1);
  size_t perSeq = 2 * 6;
  for (size_t i = perSeq; i < 2 * perSeq; ++i) {
    EXPECT_EQ(after.slotPos[i], before.slotPos[i]);
    EXPECT_EQ(std::memcmp(&after.scores[i], &before.scores[i], 4), 0);
  }
  // +inf in a chunk: the whole chunk is refused.
  TokenBatch c = makeChunk(cfg, 2, streams, 31, 5);
  c.scores[7] = INFINITY;
  DeviceBatch dc(c);
  ASSERT_EQ(sk_cache_append_chunk(caches.gpu, 0, &shape, 2, 5, dc.keys.ptr,
                                  dc.values.ptr,
                                  static_cast<float *>(dc.scores.ptr), nullptr),
            SK_OK);
  EXPECT_EQ(sk_cache_check_device_error(caches.gpu, nullptr),
            SK_ERR_INVALID_SCORE);
  Snapshot last = snapshot(caches.gpu, 0);
  EXPECT_EQ(last.pos[2], after.pos[2]);
  EXPECT_EQ(last.slotPos, after.slotPos);
}

TEST(GpuCacheErrors, NoDeviceIsAnErrorNotACrash) {
  if (sk_rt_has_device())
    GTEST_SKIP() << "a GPU is present";
  sk_cache_config cfg =
      makeConfig(SK_BACKEND_CUDA, 2, 4, 2, 16, SK_DTYPE_BF16, 3, 64);
  sk_cache *cache = nullptr;
  sk_status status = sk_cache_create(&cfg, &cache);
  EXPECT_TRUE(status == SK_ERR_NO_DEVICE || status == SK_ERR_UNSUPPORTED ||
              status == SK_ERR_CUDA)
      << sk_status_name(status);
  EXPECT_EQ(cache, nullptr);
  EXPECT_STRNE(sk_cache_last_error(), "");
}

} // namespace
