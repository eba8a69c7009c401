// Brute-force recomputation of SPEC 3/4 (sort + breakpoint search in long
// double) that the cache tests compare against; independent of lib/.
#ifndef SPARSEK_RUNTIME_TEST_REFERENCE_H
#define SPARSEK_RUNTIME_TEST_REFERENCE_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace sparsek::test {

/// SPARSEK threshold of `z` (unmasked scores only) with budget k, SPEC 3
/// step 3: the largest breakpoint where f >= k, then the linear piece.
inline long double referenceTau(const std::vector<float> &z, int64_t k) {
  const long double inf = std::numeric_limits<long double>::infinity();
  if (k == 0)
    return inf;
  if (static_cast<int64_t>(z.size()) <= k)
    return -inf;
  std::vector<long double> points;
  points.reserve(2 * z.size());
  for (float v : z) {
    points.push_back(v);
    points.push_back(static_cast<long double>(v) - 1.0L);
  }
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  auto f = [&](long double x) {
    long double sum = 0;
    for (float v : z)
      sum += std::clamp(static_cast<long double>(v) - x, 0.0L, 1.0L);
    return sum;
  };
  const long double target = static_cast<long double>(k);
  // f(points.front()) = n > k and f(points.back()) = 0 < k.
  size_t lo = 0, hi = points.size() - 1;
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (f(points[mid]) >= target)
      lo = mid;
    else
      hi = mid;
  }
  long double a = points[lo], b = points[hi];
  long double fa = f(a), fb = f(b);
  if (fa == target)
    return a;
  return a + (fa - target) * (b - a) / (fa - fb);
}

struct Entry {
  int64_t position;
  float score;
  bool operator==(const Entry &o) const {
    return position == o.position && score == o.score;
  }
  bool operator<(const Entry &o) const { return position < o.position; }
};

/// Expected state of one (sequence, head) after appending position p.
struct Expected {
  std::vector<Entry> pool; // sorted by position
  long double tau;
  std::vector<int64_t> window; // positions in the window, ascending
};

/// Recomputes Win(p), Sel(p) and tau(p) from the whole score stream
/// u[0..p] of one head (SPEC 4).
inline Expected referenceState(const std::vector<float> &u, int64_t p,
                               int64_t k, int64_t w) {
  Expected e;
  std::vector<Entry> candidates;
  std::vector<float> values;
  for (int64_t j = 0; j <= p - w; ++j) {
    if (u[j] == -std::numeric_limits<float>::infinity())
      continue;
    candidates.push_back({j, u[j]});
    values.push_back(u[j]);
  }
  e.tau = referenceTau(values, k);
  std::sort(
      candidates.begin(), candidates.end(), [](const Entry &a, const Entry &b) {
        return a.score != b.score ? a.score > b.score : a.position < b.position;
      });
  if (static_cast<int64_t>(candidates.size()) > k)
    candidates.resize(k);
  std::sort(candidates.begin(), candidates.end());
  e.pool = candidates;
  for (int64_t j = std::max<int64_t>(0, p - w + 1); j <= p; ++j)
    e.window.push_back(j);
  return e;
}

} // namespace sparsek::test

#endif // SPARSEK_RUNTIME_TEST_REFERENCE_H
