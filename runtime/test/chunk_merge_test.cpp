// Host model of the parallel pool merge of long chunks
// (lib/cache_cuda_chunk.cuh: filter, batches, sort, drops matched to steps,
// slot links resolved by pointer jumping) against offering the candidates one
// at a time with the pool rule, slot for slot. Checks the algorithm's math on
// the CPU; the CUDA code itself is checked against the CPU cache in
// cache_gpu_test.
#include "pool_rule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <random>
#include <vector>

namespace {

using sparsek::rt::offerToPool;
using sparsek::rt::weakerEntry;

struct Pool {
  std::vector<float> score;   // [k], -inf when empty
  std::vector<long long> pos; // [k], -1 when empty
  int count = 0, weak = 0;
  float weakScore = 0.0f;
};

/// One candidate at a time, as the CPU cache and the token path do.
void offerTokens(Pool &p, int k, const std::vector<float> &z,
                 long long firstPos) {
  for (size_t i = 0; i < z.size(); ++i) {
    if (z[i] == -INFINITY)
      continue;
    const auto offer = offerToPool(p.count, k, p.weak, p.weakScore, z[i]);
    if (offer.slot < 0)
      continue;
    p.score[offer.slot] = z[i];
    p.pos[offer.slot] = firstPos + static_cast<long long>(i);
    if (offer.displaces) {
      int w = 0;
      for (int s = 1; s < p.count; ++s)
        if (weakerEntry(p.score[s], p.pos[s], p.score[w], p.pos[w]))
          w = s;
      p.weak = w;
      p.weakScore = p.score[w];
    }
  }
}

struct Entry {
  float score;
  long long pos;
  int id; // slot (pool entries) or k + index among the batch's candidates
};

bool stronger(const Entry &a, const Entry &b) {
  return weakerEntry(b.score, b.pos, a.score, a.pos);
}

/// mergeBatch of cache_cuda_chunk.cuh, sequentially: the pool (count entries,
/// ids = slots) and the batch's candidates in time order. Writes the new
/// pool into p.
void mergeBatch(Pool &p, int k, const std::vector<Entry> &cand) {
  const int count = p.count, added = static_cast<int>(cand.size());
  std::vector<Entry> all;
  for (int s = 0; s < count; ++s)
    all.push_back(Entry{p.score[s], p.pos[s], s});
  for (int i = 0; i < added; ++i)
    all.push_back(Entry{cand[i].score, cand[i].pos, k + i});
  // A candidate enters iff fewer than k earlier entries (pool or earlier
  // candidates) are stronger: the pool is the top k of what came before.
  // The device counts these in its merge sort.
  std::vector<int> admitted(added, -1), admittedCand;
  for (int i = 0; i < added; ++i) {
    int rank = 0;
    for (int j = 0; j < count + i; ++j)
      rank += stronger(all[j], all[count + i]);
    if (rank < k) {
      admitted[i] = static_cast<int>(admittedCand.size());
      admittedCand.push_back(i);
    }
  }
  // The device's merge sort (sortCountingStronger), level by level: it
  // must give the same order and, summed over levels, the same ranks.
  {
    std::vector<Entry> cur(all), out(all.size());
    std::vector<int> counted(added, 0);
    const int n = count + added;
    for (int width = 1; width < n; width *= 2) {
      for (int q = 0; q < n; ++q) {
        const int run = q / width, runStart = run * width;
        const int other = (run ^ 1) * width;
        const int otherLen = std::max(0, std::min(width, n - other));
        int lo = 0, hi = otherLen;
        while (lo < hi) {
          const int mid = (lo + hi) / 2;
          if (stronger(cur[other + mid], cur[q]))
            lo = mid + 1;
          else
            hi = mid;
        }
        out[std::min(runStart, other) + (q - runStart) + lo] = cur[q];
        if ((run & 1) && cur[q].id >= k)
          counted[cur[q].id - k] += lo;
      }
      cur = out;
    }
    for (int i = 0; i < added; ++i) {
      int rank = 0;
      for (int j = 0; j < count + i; ++j)
        rank += stronger(all[j], all[count + i]);
      ASSERT_EQ(counted[i], rank) << "candidate " << i;
    }
    std::sort(all.begin(), all.end(), stronger);
    for (int j = 0; j < n; ++j)
      ASSERT_EQ(cur[j].id, all[j].id) << "sorted entry " << j;
  }
  const int m = static_cast<int>(admittedCand.size());
  const int kept = std::min(count + m, k), fill = std::min(m, k - count);
  // Entries that drop out: pool entries and admitted candidates past the
  // top k, strongest first; the j-th weakest drops at the (fill + j)-th
  // admission, since the pool's weakest only grows stronger.
  std::vector<int> evicted;
  for (size_t j = kept; j < all.size(); ++j)
    if (all[j].id < k || admitted[all[j].id - k] >= 0)
      evicted.push_back(all[j].id);
  ASSERT_EQ(static_cast<int>(evicted.size()), count + m - kept);
  std::vector<int> link(m);
  for (int j = 0; j < m; ++j) {
    if (j < fill) {
      link[j] = -(count + j) - 1;
    } else {
      const int x = evicted[evicted.size() - 1 - (j - fill)];
      link[j] = x < k ? -x - 1 : admitted[x - k];
      ASSERT_TRUE(x < k || admitted[x - k] < j) << "a link forward in time";
    }
  }
  // Synchronous pointer-jumping rounds, as the block does them.
  for (bool open = true; open;) {
    open = false;
    std::vector<int> next(link);
    for (int j = 0; j < m; ++j)
      if (link[j] >= 0) {
        next[j] = link[link[j]];
        open |= next[j] >= 0;
      }
    link = next;
  }
  for (int j = 0; j < kept; ++j) {
    const Entry &e = all[j];
    const int slot = e.id < k ? e.id : -link[admitted[e.id - k]] - 1;
    ASSERT_GE(slot, 0);
    ASSERT_LT(slot, k);
    ASSERT_TRUE(e.id < k || admitted[e.id - k] >= 0);
    p.score[slot] = e.score;
    p.pos[slot] = e.pos;
    if (j == kept - 1) {
      p.weak = slot;
      p.weakScore = e.score;
    }
  }
  p.count = kept;
}

/// chunkPool of cache_cuda_chunk.cuh with batches of at most `capacity`
/// pool entries and candidates, and tiles of `tile` candidates.
void offerChunk(Pool &p, int k, const std::vector<float> &z, long long firstPos,
                int capacity, int tile) {
  std::vector<Entry> cand;
  for (size_t q0 = 0; q0 < z.size();) {
    const bool full = p.count == k;
    std::vector<Entry> offered;
    for (size_t q = q0; q < std::min(z.size(), q0 + tile); ++q)
      if (z[q] != -INFINITY && (!full || z[q] > p.weakScore))
        offered.push_back(Entry{z[q], firstPos + static_cast<long long>(q), 0});
    if (p.count + cand.size() + offered.size() >
        static_cast<size_t>(capacity)) {
      mergeBatch(p, k, cand);
      if (::testing::Test::HasFatalFailure())
        return;
      cand.clear();
      continue; // the same tile again, filtered by the new weakest
    }
    cand.insert(cand.end(), offered.begin(), offered.end());
    q0 += tile;
  }
  if (!cand.empty())
    mergeBatch(p, k, cand);
}

enum class Kind { Normal, Ties, Masked, Rising, Falling, Constant };

std::vector<float> stream(Kind kind, size_t n, std::mt19937 &rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> z(n);
  for (size_t i = 0; i < n; ++i) {
    switch (kind) {
    case Kind::Normal:
      z[i] = normal(rng);
      break;
    case Kind::Ties:
      z[i] = std::round(normal(rng) * 2.0f) / 2.0f;
      break;
    case Kind::Masked:
      z[i] = uniform(rng) < 0.3f ? -INFINITY : std::round(normal(rng) * 4) / 4;
      break;
    case Kind::Rising: // every candidate enters: long slot chains
      z[i] = 0.01f * static_cast<float>(i) + 0.005f * normal(rng);
      break;
    case Kind::Falling:
      z[i] = -0.01f * static_cast<float>(i) + 0.02f * normal(rng);
      break;
    case Kind::Constant:
      z[i] = 1.0f;
      break;
    }
  }
  return z;
}

void expectSamePool(const Pool &a, const Pool &b, int k, const char *when) {
  ASSERT_EQ(a.count, b.count) << when;
  for (int s = 0; s < k; ++s) {
    ASSERT_EQ(a.pos[s], b.pos[s]) << when << " slot " << s;
    ASSERT_EQ(a.score[s], b.score[s]) << when << " slot " << s;
  }
  if (a.count > 0) {
    ASSERT_EQ(a.weak, b.weak) << when;
    ASSERT_EQ(a.weakScore, b.weakScore) << when;
  }
}

// Random pools (empty, partly filled, full from earlier chunks) and chunks
// of every kind and length, with sorts much smaller than the batches so
// that chunks take many batches.
TEST(ChunkMerge, MatchesOfferingOneAtATime) {
  std::mt19937 rng(12);
  const Kind kinds[] = {Kind::Normal, Kind::Ties,    Kind::Masked,
                        Kind::Rising, Kind::Falling, Kind::Constant};
  int cases = 0;
  for (int k : {1, 2, 3, 7, 16, 33}) {
    for (Kind kind : kinds) {
      for (int trial = 0; trial < 12; ++trial) {
        Pool token, chunk;
        for (Pool *p : {&token, &chunk}) {
          p->score.assign(k, -INFINITY);
          p->pos.assign(k, -1);
        }
        const int capacity = k + 8 + static_cast<int>(rng() % 40);
        const int tile = 1 + static_cast<int>(rng() % 8);
        long long pos = 0;
        // A few chunks in a row: the later ones start from a pool left by
        // the earlier ones (mixed kinds, so the pool is not sorted by slot).
        for (int c = 0; c < 4; ++c) {
          const size_t n = rng() % (c == 0 ? k + 3 : 6 * k + 50);
          const auto z = stream(c % 2 ? kind : kinds[rng() % 6], n, rng);
          offerTokens(token, k, z, pos);
          offerChunk(chunk, k, z, pos, capacity, tile);
          pos += static_cast<long long>(n);
          std::string when = "k " + std::to_string(k) + " trial " +
                             std::to_string(trial) + " chunk " +
                             std::to_string(c);
          expectSamePool(token, chunk, k, when.c_str());
          if (HasFatalFailure())
            return;
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, 6 * 6 * 12 * 4);
}

} // namespace
