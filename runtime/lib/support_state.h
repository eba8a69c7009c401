// Exact SPARSEK threshold (tau) over a growing set of candidate scores, kept
// incrementally for one (sequence, layer, head) of the CPU cache (SPEC 3, 6).
#ifndef SPARSEK_RUNTIME_LIB_SUPPORT_STATE_H
#define SPARSEK_RUNTIME_LIB_SUPPORT_STATE_H

#include <cstdint>
#include <vector>

namespace sparsek::rt {

/// Keeps the scores of candidates with p > 0 and solves tau exactly after
/// every new candidate. tau only rises, so each score moves upper (p = 1) ->
/// middle (0 < p < 1) -> dropped at most once: two min-heaps and a float64
/// running sum of the middle give amortized O(log n) per candidate.
class SupportState {
public:
  /// budget = k of SPEC 3; capacity bounds the kept scores (SPEC 6).
  SupportState(int64_t budget, int64_t capacity);

  /// Forgets every candidate.
  void reset();
  /// Adds one unmasked candidate score (finite; callers filter -inf).
  void add(float score);

  /// +inf for k = 0, -inf while there are at most k candidates.
  double tau() const { return tau_; }
  /// True once a score above tau had to be dropped for lack of capacity; tau
  /// is then a lower bound of the exact one.
  bool approximate() const { return approximate_; }
  int64_t candidates() const { return candidates_; }
  int64_t kept() const {
    return static_cast<int64_t>(upper_.size() + middle_.size());
  }

private:
  void insertKept(float score);
  void dropLowestKept();
  void solve();

  int64_t budget_, capacity_;
  std::vector<float> upper_;  // min-heap: scores with p = 1
  std::vector<float> middle_; // min-heap: scores with 0 < p < 1
  double middleSum_ = 0.0;
  double tau_ = 0.0;
  int64_t candidates_ = 0;
  bool approximate_ = false;
};

} // namespace sparsek::rt

#endif // SPARSEK_RUNTIME_LIB_SUPPORT_STATE_H
