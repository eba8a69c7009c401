// Every bad input returns an error with a message and leaves all sequences
// (the failing one included) exactly as they were.
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstdint>

using namespace sparsek::test;

namespace {

class CacheErrors : public ::testing::Test {
protected:
  void SetUp() override {
    cfg = makeConfig(SK_BACKEND_CPU, 2, 4, 3, 8, SK_DTYPE_F32, 3, 16);
    shape = shapeOf(cfg);
    ASSERT_EQ(sk_cache_create(&cfg, &cache), SK_OK) << sk_cache_last_error();
    for (int32_t &id : ids)
      ASSERT_EQ(sk_cache_alloc_seq(cache, &id), SK_OK);
    for (int i = 0; i < 3 * 2; ++i)
      streams.push_back(makeScores(Scores::Normal, 64, 50 + i));
    // Some history so that pools, windows and tau are all populated.
    for (int64_t p = 0; p < 20; ++p)
      append(ids, p);
  }
  void TearDown() override {
    if (cache) {
      EXPECT_EQ(sk_cache_destroy(cache), SK_OK);
    }
  }
  sk_status append(const std::vector<int32_t> &seqs, int64_t p) {
    TokenBatch b = makeTokenBatch(cfg, seqs, streams, p);
    return sk_cache_append_tokens(
        cache, 0, &shape, static_cast<int32_t>(seqs.size()), seqs.data(),
        b.keys.data(), b.values.data(), b.scores.data(), nullptr);
  }
  void expectUnchanged(const Snapshot &before) {
    Snapshot after = snapshot(cache, 0);
    EXPECT_EQ(before.keys, after.keys);
    EXPECT_EQ(before.values, after.values);
    EXPECT_EQ(before.slotPos, after.slotPos);
    EXPECT_EQ(0, std::memcmp(before.scores.data(), after.scores.data(),
                             before.scores.size() * 4));
    EXPECT_EQ(0, std::memcmp(before.tau.data(), after.tau.data(),
                             before.tau.size() * 4));
    EXPECT_EQ(before.poolCount, after.poolCount);
    EXPECT_EQ(before.pos, after.pos);
  }
  static std::string message() { return sk_cache_last_error(); }

  sk_cache_config cfg{};
  sk_kv_shape shape{};
  sk_cache *cache = nullptr;
  std::vector<int32_t> ids = {-1, -1, -1};
  std::vector<std::vector<float>> streams;
};

TEST_F(CacheErrors, NanAndPlusInfScoresRejectedWithoutChange) {
  for (float bad : {NAN, INFINITY}) {
    Snapshot before = snapshot(cache, 0);
    TokenBatch b = makeTokenBatch(cfg, ids, streams, 20);
    b.scores[2 * 2 + 1] = bad; // last sequence, second head
    EXPECT_EQ(sk_cache_append_tokens(cache, 0, &shape, 3, ids.data(),
                                     b.keys.data(), b.values.data(),
                                     b.scores.data(), nullptr),
              SK_ERR_INVALID_SCORE);
    EXPECT_NE(message().find(std::isnan(bad) ? "NaN" : "+inf"),
              std::string::npos)
        << message();
    expectUnchanged(before);
    // A chunk with one bad score deep inside is rejected as a whole.
    TokenBatch c = makeChunk(cfg, ids[1], streams, 20, 30);
    c.scores[30 + 17] = bad;
    EXPECT_EQ(sk_cache_append_chunk(cache, 0, &shape, ids[1], 30, c.keys.data(),
                                    c.values.data(), c.scores.data(), nullptr),
              SK_ERR_INVALID_SCORE);
    expectUnchanged(before);
  }
  // -inf is a masked score, not an error.
  TokenBatch b = makeTokenBatch(cfg, ids, streams, 20);
  b.scores[0] = -INFINITY;
  EXPECT_EQ(sk_cache_append_tokens(cache, 0, &shape, 3, ids.data(),
                                   b.keys.data(), b.values.data(),
                                   b.scores.data(), nullptr),
            SK_OK);
}

TEST_F(CacheErrors, BadSequenceHandles) {
  Snapshot before = snapshot(cache, 0);
  for (int32_t bad : {-1, 3, 1000}) {
    std::vector<int32_t> seqs = {ids[0], bad};
    TokenBatch b = makeTokenBatch(cfg, {ids[0], ids[1]}, streams, 20);
    EXPECT_EQ(sk_cache_append_tokens(cache, 0, &shape, 2, seqs.data(),
                                     b.keys.data(), b.values.data(),
                                     b.scores.data(), nullptr),
              SK_ERR_BAD_HANDLE);
    EXPECT_NE(message().find("not allocated"), std::string::npos);
    EXPECT_EQ(sk_cache_reset_seq(cache, bad), SK_ERR_BAD_HANDLE);
    EXPECT_EQ(sk_cache_free_seq(cache, bad), SK_ERR_BAD_HANDLE);
  }
  expectUnchanged(before);
  // A freed sequence is a bad handle until allocated again.
  ASSERT_EQ(sk_cache_free_seq(cache, ids[2]), SK_OK);
  EXPECT_EQ(sk_cache_free_seq(cache, ids[2]), SK_ERR_BAD_HANDLE);
  EXPECT_EQ(append({ids[2]}, 20), SK_ERR_BAD_HANDLE);
  int32_t approx = 0;
  EXPECT_EQ(sk_cache_seq_is_approximate(cache, ids[2], &approx),
            SK_ERR_BAD_HANDLE);
}

TEST_F(CacheErrors, BadCacheHandles) {
  int32_t seq = -1;
  EXPECT_EQ(sk_cache_alloc_seq(nullptr, &seq), SK_ERR_BAD_HANDLE);
  sk_cache *other = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &other), SK_OK);
  ASSERT_EQ(sk_cache_destroy(other), SK_OK);
  // A destroyed handle is recognized, never dereferenced.
  EXPECT_EQ(sk_cache_alloc_seq(other, &seq), SK_ERR_BAD_HANDLE);
  EXPECT_EQ(sk_cache_destroy(other), SK_ERR_BAD_HANDLE);
  sk_cache_view v{};
  EXPECT_EQ(sk_cache_get_view(other, 0, &v), SK_ERR_BAD_HANDLE);
  EXPECT_FALSE(message().empty());
}

TEST_F(CacheErrors, SlotExhaustionThenReuse) {
  int32_t seq = -1;
  EXPECT_EQ(sk_cache_alloc_seq(cache, &seq), SK_ERR_OUT_OF_SLOTS);
  EXPECT_NE(message().find("in use"), std::string::npos);
  Snapshot before = snapshot(cache, 0);
  ASSERT_EQ(sk_cache_free_seq(cache, ids[1]), SK_OK);
  ASSERT_EQ(sk_cache_alloc_seq(cache, &seq), SK_OK);
  EXPECT_EQ(seq, ids[1]);
  // The reused slot starts empty; the other sequences are untouched.
  Snapshot after = snapshot(cache, 0);
  EXPECT_EQ(after.pos[seq], -1);
  EXPECT_EQ(after.pos[ids[0]], before.pos[ids[0]]);
  size_t rowBytes = 2 * (4 + 3) * 8 * 4;
  EXPECT_TRUE(std::equal(before.keys.begin(), before.keys.begin() + rowBytes,
                         after.keys.begin()));
  for (int h = 0; h < 2; ++h) {
    EXPECT_EQ(after.poolCount[seq * 2 + h], 0);
    EXPECT_EQ(after.tau[seq * 2 + h], -INFINITY);
  }
}

TEST_F(CacheErrors, WrongSizesAndArguments) {
  Snapshot before = snapshot(cache, 0);
  TokenBatch b = makeTokenBatch(cfg, ids, streams, 20);
  auto tryShape = [&](sk_kv_shape s) {
    return sk_cache_append_tokens(cache, 0, &s, 3, ids.data(), b.keys.data(),
                                  b.values.data(), b.scores.data(), nullptr);
  };
  sk_kv_shape s = shape;
  s.head_dim += 1;
  EXPECT_EQ(tryShape(s), SK_ERR_INVALID_ARGUMENT);
  EXPECT_NE(message().find("D="), std::string::npos);
  s = shape;
  s.num_kv_heads = 1;
  EXPECT_EQ(tryShape(s), SK_ERR_INVALID_ARGUMENT);
  s = shape;
  s.dtype = SK_DTYPE_BF16;
  EXPECT_EQ(tryShape(s), SK_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sk_cache_append_tokens(cache, 0, nullptr, 3, ids.data(),
                                   b.keys.data(), b.values.data(),
                                   b.scores.data(), nullptr),
            SK_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sk_cache_append_tokens(cache, 1, &shape, 3, ids.data(),
                                   b.keys.data(), b.values.data(),
                                   b.scores.data(), nullptr),
            SK_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sk_cache_append_tokens(cache, 0, &shape, 4, ids.data(),
                                   b.keys.data(), b.values.data(),
                                   b.scores.data(), nullptr),
            SK_ERR_INVALID_ARGUMENT);
  std::vector<int32_t> twice = {ids[0], ids[0]};
  EXPECT_EQ(sk_cache_append_tokens(cache, 0, &shape, 2, twice.data(),
                                   b.keys.data(), b.values.data(),
                                   b.scores.data(), nullptr),
            SK_ERR_INVALID_ARGUMENT);
  EXPECT_NE(message().find("twice"), std::string::npos);
  EXPECT_EQ(sk_cache_append_tokens(cache, 0, &shape, 3, ids.data(), nullptr,
                                   b.values.data(), b.scores.data(), nullptr),
            SK_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sk_cache_append_chunk(cache, 0, &shape, ids[0], -5, b.keys.data(),
                                  b.values.data(), b.scores.data(), nullptr),
            SK_ERR_INVALID_ARGUMENT);
  expectUnchanged(before);
}

TEST_F(CacheErrors, InvalidConfigs) {
  sk_cache *c = nullptr;
  sk_cache_config bad = cfg;
  bad.k = 0;
  bad.w = 0;
  EXPECT_EQ(sk_cache_create(&bad, &c), SK_ERR_INVALID_ARGUMENT);
  EXPECT_NE(message().find("nothing to attend"), std::string::npos);
  bad = cfg;
  bad.score_capacity = cfg.k; // needs k + 1
  EXPECT_EQ(sk_cache_create(&bad, &c), SK_ERR_INVALID_ARGUMENT);
  bad = cfg;
  bad.head_dim = 0;
  EXPECT_EQ(sk_cache_create(&bad, &c), SK_ERR_INVALID_ARGUMENT);
  // A C caller (ctypes) can store any int in an enum field.
  for (int32_t raw : {9, -1}) {
    bad = cfg;
    std::memcpy(&bad.dtype, &raw, sizeof(raw));
    EXPECT_EQ(sk_cache_create(&bad, &c), SK_ERR_INVALID_ARGUMENT);
    bad = cfg;
    std::memcpy(&bad.backend, &raw, sizeof(raw));
    EXPECT_EQ(sk_cache_create(&bad, &c), SK_ERR_INVALID_ARGUMENT);
    EXPECT_NE(message().find("unknown"), std::string::npos);
  }
  bad = cfg;
  bad.max_seqs = 1 << 30;
  bad.k = 1 << 20;
  bad.score_capacity = (1 << 20) + 1;
  EXPECT_EQ(sk_cache_create(&bad, &c), SK_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sk_cache_create(nullptr, &c), SK_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(c, nullptr);
}

TEST_F(CacheErrors, SizeGuardSeesDimensionsNearInt32Max) {
  // head_dim + value_dim was added in int: 2^30 + 2^30 wrapped negative
  // (undefined; UBSan stops there), the byte count came out negative and
  // passed the size guard, and a 4 PiB allocation was attempted.
  sk_cache *c = nullptr;
  for (int32_t dim : {int32_t(1) << 30, INT32_MAX}) {
    sk_cache_config bad = cfg;
    bad.max_seqs = 1 << 16;
    bad.head_dim = dim;
    bad.value_dim = dim;
    EXPECT_EQ(sk_cache_create(&bad, &c), SK_ERR_INVALID_ARGUMENT);
    EXPECT_NE(message().find("too large"), std::string::npos) << message();
    EXPECT_EQ(c, nullptr);
  }
  // Every factor at its int32 limit still gives a clean answer.
  sk_cache_config huge = cfg;
  huge.num_layers = huge.num_kv_heads = huge.max_seqs = INT32_MAX;
  huge.head_dim = huge.value_dim = huge.score_capacity = INT32_MAX;
  huge.k = 1 << 23;
  huge.w = 1 << 23;
  EXPECT_EQ(sk_cache_create(&huge, &c), SK_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(c, nullptr);
}

TEST_F(CacheErrors, ResetClearsOneSequenceOnly) {
  Snapshot before = snapshot(cache, 0);
  ASSERT_EQ(sk_cache_reset_seq(cache, ids[0]), SK_OK);
  Snapshot after = snapshot(cache, 0);
  EXPECT_EQ(after.pos[ids[0]], -1);
  EXPECT_EQ(after.pos[ids[1]], before.pos[ids[1]]);
  EXPECT_EQ(after.poolCount[ids[0] * 2], 0);
  EXPECT_EQ(after.poolCount[ids[1] * 2], before.poolCount[ids[1] * 2]);
  // After a reset the sequence behaves like a fresh one.
  ASSERT_EQ(append({ids[0]}, 0), SK_OK);
  Snapshot s = snapshot(cache, 0);
  EXPECT_EQ(compareWithReference(s, cfg, ids[0], 0, streams[ids[0] * 2], 0),
            "");
}

// Narrow scores make the exact support outgrow a small capacity: the
// sequence is flagged approximate, tau stays a lower bound of the exact one,
// the pool stays exact, and the other sequence is not flagged.
TEST(CacheCapacity, OverflowIsReportedAndTauIsALowerBound) {
  sk_cache_config cfg =
      makeConfig(SK_BACKEND_CPU, 1, 8, 2, 4, SK_DTYPE_F32, 2, 12);
  sk_kv_shape shape = shapeOf(cfg);
  sk_cache *cache = nullptr;
  ASSERT_EQ(sk_cache_create(&cfg, &cache), SK_OK);
  int32_t narrow = -1, wide = -1;
  ASSERT_EQ(sk_cache_alloc_seq(cache, &narrow), SK_OK);
  ASSERT_EQ(sk_cache_alloc_seq(cache, &wide), SK_OK);
  std::vector<std::vector<float>> streams = {
      makeScores(Scores::Narrow, 400, 3),
      // Scores 0, 10, 20, ...: every new candidate is a hard top-k winner,
      // so the support never exceeds k + 1.
      std::vector<float>(400)};
  for (int i = 0; i < 400; ++i)
    streams[1][i] = 10.0f * i;
  for (int64_t p = 0; p < 400; ++p) {
    TokenBatch b = makeTokenBatch(cfg, {narrow, wide}, streams, p);
    ASSERT_EQ(sk_cache_append_tokens(cache, 0, &shape, 2,
                                     std::vector<int32_t>{narrow, wide}.data(),
                                     b.keys.data(), b.values.data(),
                                     b.scores.data(), nullptr),
              SK_OK);
    Snapshot s = snapshot(cache, 0);
    Expected e = referenceState(streams[0], p, cfg.k, cfg.w);
    if (std::isfinite(static_cast<double>(e.tau))) {
      ASSERT_LE(s.tau[narrow], e.tau + 1e-6L) << "p = " << p;
    }
    std::vector<Entry> pool;
    for (int32_t i = 0; i < s.poolCount[narrow]; ++i)
      pool.push_back({s.slotPos[narrow * 10 + i], s.scores[narrow * 10 + i]});
    std::sort(pool.begin(), pool.end());
    ASSERT_EQ(pool, e.pool) << "the pool does not depend on the capacity";
    ASSERT_EQ(compareWithReference(s, cfg, wide, 0, streams[1], p), "");
  }
  int32_t approx = 0;
  ASSERT_EQ(sk_cache_seq_is_approximate(cache, narrow, &approx), SK_OK);
  EXPECT_EQ(approx, 1);
  ASSERT_EQ(sk_cache_seq_is_approximate(cache, wide, &approx), SK_OK);
  EXPECT_EQ(approx, 0);
  sk_cache_destroy(cache);
}

} // namespace
