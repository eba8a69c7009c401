// CPU cache against the brute-force recomputation of SPEC 4 after every
// append: pool == Sel(p), window, K/V bytes, tau; chunk == token appends.
#include "test_util.h"

#include <gtest/gtest.h>

using namespace sparsek::test;

namespace {

struct Case {
  const char *name;
  int32_t k, w;
  int64_t tokens;
  Scores scores;
  sk_dtype dtype;
};

// Short names in test listings instead of gtest's byte dump.
void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

class CpuCacheReference : public ::testing::TestWithParam<Case> {};

std::vector<std::vector<float>> makeStreams(const Case &c, int32_t seqs,
                                            int32_t heads) {
  std::vector<std::vector<float>> streams;
  for (int32_t i = 0; i < seqs * heads; ++i)
    streams.push_back(makeScores(c.scores, c.tokens, 1000 + 17 * i + c.k));
  return streams;
}

TEST_P(CpuCacheReference, MatchesBruteForceAfterEveryAppend) {
  const Case &tc = GetParam();
  const int32_t heads = 2, seqs = 3;
  sk_cache_config cfg = makeConfig(SK_BACKEND_CPU, heads, tc.k, tc.w, 8,
                                   tc.dtype, seqs, tc.k * 64 + 64);
  sk_kv_shape shape = shapeOf(cfg);
  sk_cache *cache = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &cache), SK_OK) << sk_cache_last_error();
  std::vector<int32_t> ids(seqs);
  for (int32_t &id : ids)
    ASSERT_EQ(sk_cache_alloc_seq(cache, &id), SK_OK);
  auto streams = makeStreams(tc, seqs, heads);
  // Sequences 0 and 1 get one token per call; sequence 2 gets chunks.
  std::vector<int32_t> batch = {ids[0], ids[1]};
  int64_t chunkEnd = 0;
  std::mt19937 rng(7);
  for (int64_t p = 0; p < tc.tokens; ++p) {
    bool chunked = false;
    TokenBatch b = makeTokenBatch(cfg, batch, streams, p);
    ASSERT_EQ(sk_cache_append_tokens(cache, 0, &shape, 2, batch.data(),
                                     b.keys.data(), b.values.data(),
                                     b.scores.data(), nullptr),
              SK_OK)
        << sk_cache_last_error();
    if (p == chunkEnd) {
      int64_t count = std::min<int64_t>(1 + rng() % 37, tc.tokens - p);
      TokenBatch chunk = makeChunk(cfg, ids[2], streams, p, count);
      ASSERT_EQ(sk_cache_append_chunk(cache, 0, &shape, ids[2], count,
                                      chunk.keys.data(), chunk.values.data(),
                                      chunk.scores.data(), nullptr),
                SK_OK)
          << sk_cache_last_error();
      chunkEnd = p + count;
      chunked = true;
    }
    Snapshot s = snapshot(cache, 0);
    for (int32_t seq : batch)
      for (int32_t h = 0; h < heads; ++h) {
        std::string diff =
            compareWithReference(s, cfg, seq, h, streams[seq * heads + h], p);
        ASSERT_EQ(diff, "");
      }
    if (chunked)
      for (int32_t h = 0; h < heads; ++h) {
        std::string diff = compareWithReference(
            s, cfg, ids[2], h, streams[ids[2] * heads + h], chunkEnd - 1);
        ASSERT_EQ(diff, "");
      }
  }
  int32_t approx = -1;
  EXPECT_EQ(sk_cache_seq_is_approximate(cache, ids[0], &approx), SK_OK);
  EXPECT_EQ(approx, 0);
  EXPECT_EQ(sk_cache_destroy(cache), SK_OK);
}

TEST_P(CpuCacheReference, ChunkEqualsTokensBitForBit) {
  const Case &tc = GetParam();
  const int32_t heads = 2;
  sk_cache_config cfg = makeConfig(SK_BACKEND_CPU, heads, tc.k, tc.w, 8,
                                   tc.dtype, 1, tc.k * 64 + 64);
  sk_kv_shape shape = shapeOf(cfg);
  auto streams = makeStreams(tc, 1, heads);
  sk_cache *tokens = nullptr, *chunks = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &tokens), SK_OK);
  ASSERT_EQ(sk_cache_create(&cfg, &chunks), SK_OK);
  int32_t a = -1, b = -1;
  ASSERT_EQ(sk_cache_alloc_seq(tokens, &a), SK_OK);
  ASSERT_EQ(sk_cache_alloc_seq(chunks, &b), SK_OK);
  for (int64_t p = 0; p < tc.tokens; ++p) {
    TokenBatch t = makeTokenBatch(cfg, {a}, streams, p);
    ASSERT_EQ(sk_cache_append_tokens(tokens, 0, &shape, 1, &a, t.keys.data(),
                                     t.values.data(), t.scores.data(), nullptr),
              SK_OK);
  }
  // One prompt-sized chunk, then the rest in two pieces.
  int64_t first = tc.tokens / 2, second = tc.tokens / 4;
  int64_t starts[] = {0, first, first + second};
  int64_t counts[] = {first, second, tc.tokens - first - second};
  for (int i = 0; i < 3; ++i) {
    TokenBatch c = makeChunk(cfg, b, streams, starts[i], counts[i]);
    ASSERT_EQ(sk_cache_append_chunk(chunks, 0, &shape, b, counts[i],
                                    c.keys.data(), c.values.data(),
                                    c.scores.data(), nullptr),
              SK_OK);
  }
  Snapshot x = snapshot(tokens, 0), y = snapshot(chunks, 0);
  EXPECT_EQ(x.keys, y.keys);
  EXPECT_EQ(x.values, y.values);
  EXPECT_EQ(x.slotPos, y.slotPos);
  EXPECT_EQ(0,
            std::memcmp(x.scores.data(), y.scores.data(), x.scores.size() * 4));
  EXPECT_EQ(0, std::memcmp(x.tau.data(), y.tau.data(), x.tau.size() * 4));
  EXPECT_EQ(x.poolCount, y.poolCount);
  EXPECT_EQ(x.pos, y.pos);
  sk_cache_destroy(tokens);
  sk_cache_destroy(chunks);
}

// A varlen batch of prompts (lengths 0, 1, 17 and half the stream), then a
// second batch continuing them (a cached prefix), equals append_chunk per
// sequence bit for bit.
TEST_P(CpuCacheReference, VarlenEqualsChunksBitForBit) {
  const Case &tc = GetParam();
  const int32_t heads = 2, seqs = 4;
  sk_cache_config cfg = makeConfig(SK_BACKEND_CPU, heads, tc.k, tc.w, 8,
                                   tc.dtype, seqs, tc.k * 64 + 64);
  sk_kv_shape shape = shapeOf(cfg);
  auto streams = makeStreams(tc, seqs, heads);
  sk_cache *chunks = nullptr, *varlen = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &chunks), SK_OK);
  ASSERT_EQ(sk_cache_create(&cfg, &varlen), SK_OK);
  std::vector<int32_t> ids(seqs), same(seqs);
  for (int32_t i = 0; i < seqs; ++i) {
    ASSERT_EQ(sk_cache_alloc_seq(chunks, &ids[i]), SK_OK);
    ASSERT_EQ(sk_cache_alloc_seq(varlen, &same[i]), SK_OK);
    ASSERT_EQ(ids[i], same[i]);
  }
  // Listed out of slot order, so that the offsets, not the ids, place rows.
  std::vector<int32_t> order = {ids[2], ids[0], ids[3], ids[1]};
  std::vector<int64_t> first = {17, 0, tc.tokens / 2, 1};
  std::vector<int64_t> zero(seqs, 0), rest(seqs);
  for (int32_t i = 0; i < seqs; ++i)
    rest[i] = std::min<int64_t>(tc.tokens - first[i], 5 + 11 * i);
  for (int round = 0; round < 2; ++round) {
    const std::vector<int64_t> &starts = round ? first : zero;
    const std::vector<int64_t> &counts = round ? rest : first;
    VarlenBatch v = makeVarlen(cfg, order, streams, starts, counts);
    ASSERT_EQ(sk_cache_append_varlen(varlen, 0, &shape, seqs, order.data(),
                                     v.offsets.data(), v.keys.data(),
                                     v.values.data(), v.scores.data(), nullptr),
              SK_OK)
        << sk_cache_last_error();
    for (int32_t i = 0; i < seqs; ++i) {
      if (counts[i] == 0)
        continue;
      TokenBatch c = makeChunk(cfg, order[i], streams, starts[i], counts[i]);
      ASSERT_EQ(sk_cache_append_chunk(chunks, 0, &shape, order[i], counts[i],
                                      c.keys.data(), c.values.data(),
                                      c.scores.data(), nullptr),
                SK_OK);
    }
    Snapshot x = snapshot(chunks, 0), y = snapshot(varlen, 0);
    EXPECT_EQ(x.keys, y.keys);
    EXPECT_EQ(x.values, y.values);
    EXPECT_EQ(x.slotPos, y.slotPos);
    EXPECT_EQ(
        0, std::memcmp(x.scores.data(), y.scores.data(), x.scores.size() * 4));
    EXPECT_EQ(0, std::memcmp(x.tau.data(), y.tau.data(), x.tau.size() * 4));
    EXPECT_EQ(x.poolCount, y.poolCount);
    EXPECT_EQ(x.pos, y.pos);
  }
  sk_cache_destroy(chunks);
  sk_cache_destroy(varlen);
}

INSTANTIATE_TEST_SUITE_P(
    Streams, CpuCacheReference,
    ::testing::Values(
        Case{"normal", 8, 4, 300, Scores::Normal, SK_DTYPE_F32},
        Case{"ties", 8, 4, 300, Scores::Quantized, SK_DTYPE_F32},
        Case{"many_ties_big_k", 48, 16, 400, Scores::Quantized, SK_DTYPE_F16},
        Case{"masked", 8, 3, 300, Scores::Masked, SK_DTYPE_F32},
        Case{"k0_window_only", 0, 5, 120, Scores::Normal, SK_DTYPE_F32},
        Case{"w0_no_window", 6, 0, 300, Scores::Normal, SK_DTYPE_BF16},
        Case{"w0_masked_ties", 6, 0, 300, Scores::Quantized, SK_DTYPE_F32},
        Case{"window_longer_than_stream", 4, 500, 200, Scores::Normal,
             SK_DTYPE_F32},
        Case{"narrow_range", 5, 2, 400, Scores::Narrow, SK_DTYPE_F32},
        Case{"k1_w1", 1, 1, 200, Scores::Masked, SK_DTYPE_BF16}),
    [](const ::testing::TestParamInfo<Case> &info) {
      return std::string(info.param.name);
    });

// SPEC 3's examples, exactly: hard top-k, k >= n and masked entries.
TEST(SupportEdgeCases, HardTopKReportsLargestTau) {
  // z = {5, 3, 0.5}, k = 2: z(2) - z(3) = 2.5 >= 1, so tau = z(2) - 1 = 2.
  sk_cache_config cfg =
      makeConfig(SK_BACKEND_CPU, 1, 2, 0, 4, SK_DTYPE_F32, 1, 16);
  sk_kv_shape shape = shapeOf(cfg);
  sk_cache *cache = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &cache), SK_OK);
  int32_t seq = -1;
  ASSERT_EQ(sk_cache_alloc_seq(cache, &seq), SK_OK);
  std::vector<float> scores = {5.0f, 3.0f, 0.5f};
  std::vector<float> expectTau = {-INFINITY, -INFINITY, 2.0f};
  std::vector<uint8_t> kbuf(16), vbuf(48);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(sk_cache_append_tokens(cache, 0, &shape, 1, &seq, kbuf.data(),
                                     vbuf.data(), &scores[i], nullptr),
              SK_OK);
    sk_cache_view v{};
    ASSERT_EQ(sk_cache_get_view(cache, 0, &v), SK_OK);
    EXPECT_EQ(v.tau[0], expectTau[i]) << "after " << i + 1 << " candidates";
  }
  sk_cache_destroy(cache);
}

TEST(SupportEdgeCases, MaskedScoresNeverCount) {
  // Two real candidates and many -inf with k = 2: n = 2 <= k, tau = -inf.
  sk_cache_config cfg =
      makeConfig(SK_BACKEND_CPU, 1, 2, 0, 4, SK_DTYPE_F32, 1, 16);
  sk_kv_shape shape = shapeOf(cfg);
  sk_cache *cache = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &cache), SK_OK);
  int32_t seq = -1;
  ASSERT_EQ(sk_cache_alloc_seq(cache, &seq), SK_OK);
  std::vector<float> scores = {-INFINITY, 1.0f, -INFINITY, -INFINITY, 2.0f};
  std::vector<uint8_t> kbuf(16), vbuf(48);
  for (float s : scores)
    ASSERT_EQ(sk_cache_append_tokens(cache, 0, &shape, 1, &seq, kbuf.data(),
                                     vbuf.data(), &s, nullptr),
              SK_OK);
  sk_cache_view v{};
  ASSERT_EQ(sk_cache_get_view(cache, 0, &v), SK_OK);
  EXPECT_EQ(v.tau[0], -INFINITY);
  EXPECT_EQ(v.pool_count[0], 2);
  sk_cache_destroy(cache);
}

} // namespace
