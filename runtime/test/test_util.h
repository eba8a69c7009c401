// Shared helpers of the cache tests: score streams, deterministic K/V rows,
// host snapshots of a cache view and the comparison with the reference.
#ifndef SPARSEK_RUNTIME_TEST_TEST_UTIL_H
#define SPARSEK_RUNTIME_TEST_TEST_UTIL_H

#include "reference.h"

#include "sparsek/runtime/kv_cache.h"
#include "sparsek/runtime/mgpu.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace sparsek::test {

enum class Scores { Normal, Quantized, Masked, Narrow, Rising, Falling };

/// A stream of `count` scores; Quantized makes many exact ties, Masked puts
/// -inf on about 15% of the positions, Narrow spans less than 1; Rising
/// (a positive score slope) lets almost every candidate into the pool,
/// Falling almost none.
inline std::vector<float> makeScores(Scores kind, int64_t count,
                                     uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> u(count);
  for (float &v : u) {
    switch (kind) {
    case Scores::Normal:
      v = normal(rng);
      break;
    case Scores::Quantized:
      v = std::round(normal(rng) * 4.0f) / 4.0f;
      break;
    case Scores::Masked:
      v = uniform(rng) < 0.15f ? -INFINITY : normal(rng);
      break;
    case Scores::Narrow:
      v = 0.5f * uniform(rng);
      break;
    case Scores::Rising:
      v = 1e-3f * static_cast<float>(&v - u.data()) + 0.01f * normal(rng);
      break;
    case Scores::Falling:
      v = -1e-3f * static_cast<float>(&v - u.data()) + 0.01f * normal(rng);
      break;
    }
  }
  return u;
}

inline size_t elementBytes(sk_dtype dtype) {
  return dtype == SK_DTYPE_F32 ? 4 : 2;
}

/// Bytes of the key (or value, salt = 1) row of token `pos` of (seq, head):
/// distinct for every token, so a misplaced copy cannot go unnoticed.
inline void fillRow(uint8_t *out, size_t bytes, int32_t seq, int32_t head,
                    int64_t pos, uint32_t salt) {
  uint64_t x = (static_cast<uint64_t>(pos) << 20) ^
               (static_cast<uint64_t>(seq) << 8) ^
               (static_cast<uint64_t>(head) << 2) ^ salt;
  for (size_t i = 0; i < bytes; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    out[i] = static_cast<uint8_t>(x >> 56);
  }
}

inline sk_cache_config makeConfig(sk_backend backend, int32_t heads, int32_t k,
                                  int32_t w, int32_t d, sk_dtype dtype,
                                  int32_t maxSeqs, int32_t capacity,
                                  int32_t layers = 1) {
  sk_cache_config c{};
  c.backend = backend;
  c.num_layers = layers;
  c.num_kv_heads = heads;
  c.k = k;
  c.w = w;
  c.head_dim = d;
  c.value_dim = d + 8; // Dv != D catches swapped strides
  c.dtype = dtype;
  c.max_seqs = maxSeqs;
  c.score_capacity = capacity;
  c.device = 0;
  return c;
}

inline sk_kv_shape shapeOf(const sk_cache_config &c) {
  return sk_kv_shape{c.num_kv_heads, c.head_dim, c.value_dim, c.dtype};
}

/// Host copy of every array of one layer view.
struct Snapshot {
  std::vector<uint8_t> keys, values;
  std::vector<float> scores, tau;
  std::vector<int64_t> slotPos, pos;
  std::vector<int32_t> poolCount;
};

inline void copyOut(void *dst, const void *src, size_t bytes,
                    sk_backend backend) {
  if (backend == SK_BACKEND_CPU) {
    std::memcpy(dst, src, bytes);
  } else {
    mgpuMemcpy(dst, const_cast<void *>(src), bytes, nullptr);
    mgpuStreamSynchronize(nullptr);
  }
}

inline Snapshot snapshot(const sk_cache *cache, int32_t layer) {
  sk_cache_view v{};
  EXPECT_EQ(sk_cache_get_view(cache, layer, &v), SK_OK);
  size_t rows = static_cast<size_t>(v.max_seqs) * v.num_kv_heads;
  size_t slots = rows * (v.k + v.w);
  Snapshot s;
  s.keys.resize(slots * v.head_dim * elementBytes(v.dtype));
  s.values.resize(slots * v.value_dim * elementBytes(v.dtype));
  s.scores.resize(slots);
  s.slotPos.resize(slots);
  s.tau.resize(rows);
  s.poolCount.resize(rows);
  s.pos.resize(v.max_seqs);
  copyOut(s.keys.data(), v.k_slots, s.keys.size(), v.backend);
  copyOut(s.values.data(), v.v_slots, s.values.size(), v.backend);
  copyOut(s.scores.data(), v.slot_scores, slots * 4, v.backend);
  copyOut(s.slotPos.data(), v.slot_pos, slots * 8, v.backend);
  copyOut(s.tau.data(), v.tau, rows * 4, v.backend);
  copyOut(s.poolCount.data(), v.pool_count, rows * 4, v.backend);
  copyOut(s.pos.data(), v.pos, v.max_seqs * 8, v.backend);
  return s;
}

/// Checks one (seq, head) of a snapshot against the brute-force state after
/// appending position p of stream u. Returns a description of the first
/// mismatch ("" if none) so that loops can stop at the first failure.
inline std::string
compareWithReference(const Snapshot &s, const sk_cache_config &c, int32_t seq,
                     int32_t head, const std::vector<float> &u, int64_t p) {
  const int32_t k = c.k, w = c.w, n = k + w;
  Expected e = referenceState(u, p, k, w);
  size_t row = static_cast<size_t>(seq) * c.num_kv_heads + head;
  size_t first = row * n;
  std::string where = "seq " + std::to_string(seq) + " head " +
                      std::to_string(head) + " p " + std::to_string(p) + ": ";
  if (s.pos[seq] != p)
    return where + "pos " + std::to_string(s.pos[seq]);
  if (s.poolCount[row] != static_cast<int32_t>(e.pool.size()))
    return where + "pool_count " + std::to_string(s.poolCount[row]) +
           " expected " + std::to_string(e.pool.size());
  std::vector<Entry> pool;
  for (int32_t i = 0; i < s.poolCount[row]; ++i)
    pool.push_back({s.slotPos[first + i], s.scores[first + i]});
  std::sort(pool.begin(), pool.end());
  if (pool != e.pool)
    return where + "pool differs from Sel(p)";
  for (int32_t i = s.poolCount[row]; i < k; ++i)
    if (s.slotPos[first + i] != -1)
      return where + "pool slot beyond pool_count not empty";
  for (int32_t i = 0; i < w; ++i) {
    int64_t got = s.slotPos[first + k + i];
    bool inWindow = false;
    for (int64_t j : e.window)
      if (j % w == i) {
        inWindow = true;
        if (got != j || s.scores[first + k + i] != u[j])
          return where + "window slot " + std::to_string(i) + " holds " +
                 std::to_string(got) + " expected " + std::to_string(j);
      }
    if (!inWindow && got != -1)
      return where + "window slot " + std::to_string(i) + " not empty";
  }
  size_t kb = c.head_dim * elementBytes(c.dtype);
  size_t vb = c.value_dim * elementBytes(c.dtype);
  std::vector<uint8_t> expect(std::max(kb, vb));
  for (int32_t i = 0; i < n; ++i) {
    int64_t q = s.slotPos[first + i];
    if (q < 0)
      continue;
    fillRow(expect.data(), kb, seq, head, q, 0);
    if (std::memcmp(expect.data(), &s.keys[(first + i) * kb], kb) != 0)
      return where + "key bytes of slot " + std::to_string(i);
    fillRow(expect.data(), vb, seq, head, q, 1);
    if (std::memcmp(expect.data(), &s.values[(first + i) * vb], vb) != 0)
      return where + "value bytes of slot " + std::to_string(i);
  }
  float tau = s.tau[row];
  if (std::isinf(static_cast<double>(e.tau)) || std::isinf(tau)) {
    if (static_cast<long double>(tau) != e.tau)
      return where + "tau " + std::to_string(tau) + " expected " +
             std::to_string(static_cast<double>(e.tau));
  } else {
    long double scale = 1.0L;
    for (int64_t j = 0; j <= p; ++j)
      if (std::isfinite(u[j]))
        scale = std::max(scale, static_cast<long double>(std::fabs(u[j])));
    if (std::fabs(static_cast<long double>(tau) - e.tau) > 1e-6L * scale)
      return where + "tau " + std::to_string(tau) + " expected " +
             std::to_string(static_cast<double>(e.tau));
  }
  return "";
}

/// Inputs of one token for a batch of sequences: [n][H][D], [n][H][Dv], [n][H].
struct TokenBatch {
  std::vector<uint8_t> keys, values;
  std::vector<float> scores;
};

inline TokenBatch makeTokenBatch(const sk_cache_config &c,
                                 const std::vector<int32_t> &seqs,
                                 const std::vector<std::vector<float>> &streams,
                                 int64_t p) {
  size_t kb = c.head_dim * elementBytes(c.dtype);
  size_t vb = c.value_dim * elementBytes(c.dtype);
  TokenBatch b;
  b.keys.resize(seqs.size() * c.num_kv_heads * kb);
  b.values.resize(seqs.size() * c.num_kv_heads * vb);
  b.scores.resize(seqs.size() * c.num_kv_heads);
  for (size_t i = 0; i < seqs.size(); ++i)
    for (int32_t h = 0; h < c.num_kv_heads; ++h) {
      size_t row = i * c.num_kv_heads + h;
      fillRow(&b.keys[row * kb], kb, seqs[i], h, p, 0);
      fillRow(&b.values[row * vb], vb, seqs[i], h, p, 1);
      b.scores[row] = streams[seqs[i] * c.num_kv_heads + h][p];
    }
  return b;
}

/// Inputs of tokens [start, start + count) of one sequence: [H][T][D], ...
inline TokenBatch makeChunk(const sk_cache_config &c, int32_t seq,
                            const std::vector<std::vector<float>> &streams,
                            int64_t start, int64_t count) {
  size_t kb = c.head_dim * elementBytes(c.dtype);
  size_t vb = c.value_dim * elementBytes(c.dtype);
  TokenBatch b;
  b.keys.resize(c.num_kv_heads * count * kb);
  b.values.resize(c.num_kv_heads * count * vb);
  b.scores.resize(c.num_kv_heads * count);
  for (int32_t h = 0; h < c.num_kv_heads; ++h)
    for (int64_t t = 0; t < count; ++t) {
      size_t row = h * count + t;
      fillRow(&b.keys[row * kb], kb, seq, h, start + t, 0);
      fillRow(&b.values[row * vb], vb, seq, h, start + t, 1);
      b.scores[row] = streams[seq * c.num_kv_heads + h][start + t];
    }
  return b;
}

/// A packed batch for sk_cache_append_varlen: sequence seqs[i] gets the
/// tokens starts[i] .. starts[i] + counts[i] - 1 of its streams, token-major
/// ([total][H] rows), with the cumulative offsets in `offsets`.
struct VarlenBatch : TokenBatch {
  std::vector<int32_t> offsets;
};

inline VarlenBatch makeVarlen(const sk_cache_config &c,
                              const std::vector<int32_t> &seqs,
                              const std::vector<std::vector<float>> &streams,
                              const std::vector<int64_t> &starts,
                              const std::vector<int64_t> &counts) {
  size_t kb = c.head_dim * elementBytes(c.dtype);
  size_t vb = c.value_dim * elementBytes(c.dtype);
  VarlenBatch b;
  b.offsets.push_back(0);
  for (int64_t n : counts)
    b.offsets.push_back(b.offsets.back() + static_cast<int32_t>(n));
  size_t rows = static_cast<size_t>(b.offsets.back()) * c.num_kv_heads;
  b.keys.resize(rows * kb);
  b.values.resize(rows * vb);
  b.scores.resize(rows);
  for (size_t i = 0; i < seqs.size(); ++i)
    for (int64_t t = 0; t < counts[i]; ++t)
      for (int32_t h = 0; h < c.num_kv_heads; ++h) {
        size_t row = (b.offsets[i] + t) * c.num_kv_heads + h;
        fillRow(&b.keys[row * kb], kb, seqs[i], h, starts[i] + t, 0);
        fillRow(&b.values[row * vb], vb, seqs[i], h, starts[i] + t, 1);
        b.scores[row] = streams[seqs[i] * c.num_kv_heads + h][starts[i] + t];
      }
  return b;
}

} // namespace sparsek::test

#endif // SPARSEK_RUNTIME_TEST_TEST_UTIL_H
