// Stress and constant memory: 10^6 token appends over many sequences, and one
// sequence taken to 10^6 tokens with the KV storage unchanged on the way.
#include "test_util.h"

#include <gtest/gtest.h>

using namespace sparsek::test;

namespace {

// 64 sequences x 15,625 steps = 10^6 token appends (each over 2 heads) at
// k = 64, D = 64, with sequences freed and re-allocated along the way.
TEST(CacheStress, MillionAppendsOverManySequences) {
  const int32_t seqs = 64, heads = 2, steps = 15625;
  sk_cache_config cfg =
      makeConfig(SK_BACKEND_CPU, heads, 64, 16, 64, SK_DTYPE_BF16, seqs, 4096);
  sk_kv_shape shape = shapeOf(cfg);
  sk_cache *cache = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &cache), SK_OK);
  std::vector<int32_t> ids(seqs);
  for (int32_t &id : ids)
    ASSERT_EQ(sk_cache_alloc_seq(cache, &id), SK_OK);
  // Scores: one long stream per (sequence, head), kept for the final check.
  std::vector<std::vector<float>> streams;
  for (int32_t i = 0; i < seqs * heads; ++i)
    streams.push_back(
        makeScores(i % 2 ? Scores::Quantized : Scores::Masked, steps, 900 + i));
  size_t kb = cfg.head_dim * 2, vb = cfg.value_dim * 2;
  std::vector<uint8_t> keys(seqs * heads * kb), values(seqs * heads * vb);
  std::vector<float> scores(seqs * heads);
  std::vector<int64_t> length(seqs, 0);
  for (int32_t step = 0; step < steps; ++step) {
    for (int32_t i = 0; i < seqs; ++i)
      for (int32_t h = 0; h < heads; ++h) {
        size_t row = i * heads + h;
        int64_t p = length[i];
        fillRow(&keys[row * kb], kb, ids[i], h, p, 0);
        fillRow(&values[row * vb], vb, ids[i], h, p, 1);
        scores[row] = streams[ids[i] * heads + h][p];
      }
    ASSERT_EQ(sk_cache_append_tokens(cache, 0, &shape, seqs, ids.data(),
                                     keys.data(), values.data(), scores.data(),
                                     nullptr),
              SK_OK);
    for (int64_t &n : length)
      ++n;
    // Recycle one sequence now and then: free, re-allocate, start over.
    if (step % 997 == 996) {
      int32_t victim = ids[step % seqs], again = -1;
      ASSERT_EQ(sk_cache_free_seq(cache, victim), SK_OK);
      ASSERT_EQ(sk_cache_alloc_seq(cache, &again), SK_OK);
      ASSERT_EQ(again, victim);
      length[step % seqs] = 0;
    }
  }
  // Final state of every (sequence, head) against the brute force.
  Snapshot s = snapshot(cache, 0);
  for (int32_t i = 0; i < seqs; i += 7)
    for (int32_t h = 0; h < heads; ++h)
      ASSERT_EQ(compareWithReference(s, cfg, ids[i], h,
                                     streams[ids[i] * heads + h],
                                     length[i] - 1),
                "");
  sk_cache_destroy(cache);
}

// The KV storage is allocated once: after 10^3 and 10^6 tokens the byte
// count and the arrays are the same, and the pool and window are full.
TEST(CacheConstantMemory, SameKvBytesAfterThousandAndMillionTokens) {
  sk_cache_config cfg =
      makeConfig(SK_BACKEND_CPU, 1, 32, 8, 16, SK_DTYPE_F16, 1, 1 << 14);
  sk_kv_shape shape = shapeOf(cfg);
  sk_cache *cache = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &cache), SK_OK);
  int32_t seq = -1;
  ASSERT_EQ(sk_cache_alloc_seq(cache, &seq), SK_OK);
  const int64_t chunk = 1000;
  std::vector<std::vector<float>> streams = {
      makeScores(Scores::Normal, 1000000, 11)};
  uint64_t bytesAt1k = 0;
  sk_cache_view at1k{};
  for (int64_t start = 0; start < 1000000; start += chunk) {
    TokenBatch c = makeChunk(cfg, seq, streams, start, chunk);
    ASSERT_EQ(sk_cache_append_chunk(cache, 0, &shape, seq, chunk, c.keys.data(),
                                    c.values.data(), c.scores.data(), nullptr),
              SK_OK);
    if (start == 0) {
      ASSERT_EQ(sk_cache_kv_bytes(cache, &bytesAt1k), SK_OK);
      ASSERT_EQ(sk_cache_get_view(cache, 0, &at1k), SK_OK);
    }
  }
  uint64_t bytesAt1M = 0;
  sk_cache_view at1M{};
  ASSERT_EQ(sk_cache_kv_bytes(cache, &bytesAt1M), SK_OK);
  ASSERT_EQ(sk_cache_get_view(cache, 0, &at1M), SK_OK);
  EXPECT_EQ(bytesAt1k, bytesAt1M);
  EXPECT_EQ(bytesAt1M, uint64_t(32 + 8) * (16 + 24) * 2);
  EXPECT_EQ(at1k.k_slots, at1M.k_slots);
  EXPECT_EQ(at1k.v_slots, at1M.v_slots);
  EXPECT_EQ(at1M.pos[seq], 999999);
  EXPECT_EQ(at1M.pool_count[0], 32);
  for (int i = 0; i < 8; ++i)
    EXPECT_GE(at1M.slot_pos[32 + i], 999992);
  int32_t approx = 1;
  ASSERT_EQ(sk_cache_seq_is_approximate(cache, seq, &approx), SK_OK);
  EXPECT_EQ(approx, 0) << "normal scores keep the support small";
  sk_cache_destroy(cache);
}

} // namespace
