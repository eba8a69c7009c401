// The selected pool's admission rule (SPEC 6), one definition for the CPU
// model and the CUDA kernels, so that both backends decide alike.
#ifndef SPARSEK_RUNTIME_LIB_POOL_RULE_H
#define SPARSEK_RUNTIME_LIB_POOL_RULE_H

#include "cache_layout.h"

#include <cstdint>

namespace sparsek::rt {

/// True if entry (score, pos) is weaker than entry (otherScore, otherPos) in
/// the order of SPEC 4: a lower score, or an equal score at a larger
/// position.
SK_HOST_DEVICE inline bool weakerEntry(float score, long long pos,
                                       float otherScore, long long otherPos) {
  return score < otherScore || (score == otherScore && pos > otherPos);
}

/// Where a candidate goes when offered to a pool of `count` of `k` entries
/// whose weakest entry is slot `weak` with score `weakScore`.
struct PoolOffer {
  int32_t slot;   // the pool slot the candidate takes, or -1: it stays out
  bool displaces; // it displaced the weakest entry, which is evicted for
                  // good; the new weakest is unknown until the pool is
                  // scanned (the caller's job)
};

/// Offers a candidate (scoring `score`) to the pool. A candidate always has
/// the largest position seen so far, so on a tied score it is the weaker
/// entry: it replaces the weakest only with a strictly higher score. While
/// the pool fills, the candidate takes the next free slot, and becomes the
/// weakest when it scores at most the current weakest; count, weak and
/// weakScore are updated for that case. k > 0.
SK_HOST_DEVICE inline PoolOffer offerToPool(int32_t &count, int32_t k,
                                            int32_t &weak, float &weakScore,
                                            float score) {
  if (count < k) {
    if (count == 0 || score <= weakScore) {
      weak = count;
      weakScore = score;
    }
    return PoolOffer{count++, false};
  }
  if (score > weakScore)
    return PoolOffer{weak, true};
  return PoolOffer{-1, false};
}

} // namespace sparsek::rt

#endif // SPARSEK_RUNTIME_LIB_POOL_RULE_H
