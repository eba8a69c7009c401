// CPU backend of the KV cache: the executable model of SPEC 6 that the CUDA
// backend is tested against. Plain loops, one sequence and head at a time.
#include "cache_impl.h"
#include "pool_rule.h"
#include "support_state.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

namespace sparsek::rt {
namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();

/// Index of the pool entry evicted first: lowest score, and among equal
/// scores the larger position (SPEC 4 order).
int32_t weakestSlot(const float *scores, const int64_t *positions,
                    int32_t count) {
  int32_t weakest = 0;
  for (int32_t s = 1; s < count; ++s)
    if (weakerEntry(scores[s], positions[s], scores[weakest],
                    positions[weakest]))
      weakest = s;
  return weakest;
}

class CpuCache final : public CacheBackend {
public:
  explicit CpuCache(const sk_cache_config &config) : CacheBackend(config) {}

  sk_status allocate();

  sk_status clearSeq(int32_t seq) override;
  sk_status appendTokens(int32_t layer, int32_t numSeqs, const int32_t *seqIds,
                         const void *keys, const void *values,
                         const float *scores, void *stream) override;
  sk_status appendChunk(int32_t layer, int32_t seq, int64_t numTokens,
                        const void *keys, const void *values,
                        const float *scores, void *stream) override;
  sk_status appendVarlen(int32_t layer, int32_t numSeqs, const int32_t *seqIds,
                         const int32_t *cuSeqlens, const void *keys,
                         const void *values, const float *scores,
                         void *stream) override;
  void view(int32_t layer, sk_cache_view *out) const override;
  sk_status isApproximate(int32_t seq, int32_t *approx) override;
  sk_status checkDeviceError(void *) override { return SK_OK; }

private:
  struct Layer {
    std::vector<uint8_t> keys, values;
    std::vector<float> slotScores, tau;
    std::vector<int64_t> slotPos, pos;
    std::vector<int32_t> poolCount, weakSlot;
    std::vector<SupportState> support;
  };

  void appendHead(Layer &layer, int32_t seq, int32_t head, int64_t position,
                  float score, const uint8_t *key, const uint8_t *value);
  void offerCandidate(Layer &layer, int32_t seq, int32_t head, int64_t position,
                      float score, const uint8_t *key, const uint8_t *value);
  void writeSlot(Layer &layer, size_t slot, int64_t position, float score,
                 const uint8_t *key, const uint8_t *value) const;

  std::vector<Layer> layers_;
};

/// NaN and +inf are invalid (SPEC 3); -inf means "masked" and is accepted.
sk_status checkScores(const float *scores, int64_t count, const char *what) {
  for (int64_t i = 0; i < count; ++i) {
    if (std::isnan(scores[i]) || scores[i] == kInfF)
      return cacheError(SK_ERR_INVALID_SCORE,
                        "%s: score %lld is %s; scores must be finite or -inf",
                        what, static_cast<long long>(i),
                        std::isnan(scores[i]) ? "NaN" : "+inf");
  }
  return SK_OK;
}

sk_status CpuCache::allocate() {
  const CacheLayout &l = layout_;
  try {
    layers_.resize(config_.num_layers);
    for (Layer &layer : layers_) {
      layer.keys.assign(l.keyBytes(), 0);
      layer.values.assign(l.valueBytes(), 0);
      layer.slotScores.assign(l.slotCount(), -kInfF);
      layer.slotPos.assign(l.slotCount(), -1);
      layer.tau.assign(l.rows(), l.k == 0 ? kInfF : -kInfF);
      layer.poolCount.assign(l.rows(), 0);
      layer.weakSlot.assign(l.rows(), 0);
      layer.pos.assign(l.maxSeqs, -1);
      layer.support.assign(l.rows(), SupportState(l.k, l.scoreCapacity));
    }
  } catch (const std::exception &) { // bad_alloc or length_error
    layers_.clear();
    return cacheError(SK_ERR_OUT_OF_MEMORY,
                      "sk_cache_create: host allocation failed");
  }
  return SK_OK;
}

sk_status CpuCache::clearSeq(int32_t seq) {
  const CacheLayout &l = layout_;
  for (Layer &layer : layers_) {
    for (int32_t head = 0; head < l.heads; ++head) {
      size_t first = l.slot(seq, head, 0);
      std::memset(&layer.keys[first * l.keyRowBytes()], 0,
                  l.slots() * l.keyRowBytes());
      std::memset(&layer.values[first * l.valueRowBytes()], 0,
                  l.slots() * l.valueRowBytes());
      for (int32_t s = 0; s < l.slots(); ++s) {
        layer.slotScores[first + s] = -kInfF;
        layer.slotPos[first + s] = -1;
      }
      size_t row = l.row(seq, head);
      layer.tau[row] = l.k == 0 ? kInfF : -kInfF;
      layer.poolCount[row] = 0;
      layer.weakSlot[row] = 0;
      layer.support[row].reset();
    }
    layer.pos[seq] = -1;
  }
  return SK_OK;
}

void CpuCache::writeSlot(Layer &layer, size_t slot, int64_t position,
                         float score, const uint8_t *key,
                         const uint8_t *value) const {
  const CacheLayout &l = layout_;
  std::memcpy(&layer.keys[slot * l.keyRowBytes()], key, l.keyRowBytes());
  std::memcpy(&layer.values[slot * l.valueRowBytes()], value,
              l.valueRowBytes());
  layer.slotScores[slot] = score;
  layer.slotPos[slot] = position;
}

void CpuCache::offerCandidate(Layer &layer, int32_t seq, int32_t head,
                              int64_t position, float score, const uint8_t *key,
                              const uint8_t *value) {
  if (score == -kInfF)
    return; // Masked keys are never candidates.
  const CacheLayout &l = layout_;
  size_t row = l.row(seq, head);
  layer.support[row].add(score);
  if (l.k == 0)
    return;
  size_t first = l.slot(seq, head, 0);
  float *scores = &layer.slotScores[first];
  int64_t *positions = &layer.slotPos[first];
  int32_t &count = layer.poolCount[row];
  int32_t &weak = layer.weakSlot[row];
  float weakScore = scores[weak];
  const PoolOffer offer = offerToPool(count, l.k, weak, weakScore, score);
  if (offer.slot < 0)
    return;
  writeSlot(layer, first + offer.slot, position, score, key, value);
  if (offer.displaces)
    weak = weakestSlot(scores, positions, count);
}

void CpuCache::appendHead(Layer &layer, int32_t seq, int32_t head,
                          int64_t position, float score, const uint8_t *key,
                          const uint8_t *value) {
  const CacheLayout &l = layout_;
  if (l.w > 0) {
    size_t slot = l.slot(seq, head, l.k + static_cast<int32_t>(position % l.w));
    // The token at position - w leaves the window and becomes a candidate;
    // it is copied to the pool before its slot is overwritten.
    if (layer.slotPos[slot] >= 0)
      offerCandidate(layer, seq, head, layer.slotPos[slot],
                     layer.slotScores[slot],
                     &layer.keys[slot * l.keyRowBytes()],
                     &layer.values[slot * l.valueRowBytes()]);
    writeSlot(layer, slot, position, score, key, value);
  } else {
    offerCandidate(layer, seq, head, position, score, key, value);
  }
  size_t row = l.row(seq, head);
  layer.tau[row] = static_cast<float>(layer.support[row].tau());
}

sk_status CpuCache::appendTokens(int32_t layerIndex, int32_t numSeqs,
                                 const int32_t *seqIds, const void *keys,
                                 const void *values, const float *scores,
                                 void *) {
  const CacheLayout &l = layout_;
  if (sk_status status =
          checkScores(scores, static_cast<int64_t>(numSeqs) * l.heads,
                      "sk_cache_append_tokens"))
    return status;
  Layer &layer = layers_[layerIndex];
  auto *keyBytes = static_cast<const uint8_t *>(keys);
  auto *valueBytes = static_cast<const uint8_t *>(values);
  for (int32_t i = 0; i < numSeqs; ++i) {
    int32_t seq = seqIds[i];
    int64_t position = layer.pos[seq] + 1;
    for (int32_t head = 0; head < l.heads; ++head) {
      size_t row = static_cast<size_t>(i) * l.heads + head;
      appendHead(layer, seq, head, position, scores[row],
                 keyBytes + row * l.keyRowBytes(),
                 valueBytes + row * l.valueRowBytes());
    }
    layer.pos[seq] = position;
  }
  return SK_OK;
}

sk_status CpuCache::appendChunk(int32_t layerIndex, int32_t seq,
                                int64_t numTokens, const void *keys,
                                const void *values, const float *scores,
                                void *) {
  const CacheLayout &l = layout_;
  if (sk_status status =
          checkScores(scores, numTokens * l.heads, "sk_cache_append_chunk"))
    return status;
  Layer &layer = layers_[layerIndex];
  auto *keyBytes = static_cast<const uint8_t *>(keys);
  auto *valueBytes = static_cast<const uint8_t *>(values);
  int64_t start = layer.pos[seq] + 1;
  // Token by token, exactly as single appends would do it.
  for (int64_t t = 0; t < numTokens; ++t) {
    for (int32_t head = 0; head < l.heads; ++head) {
      size_t row = static_cast<size_t>(head) * numTokens + t;
      appendHead(layer, seq, head, start + t, scores[row],
                 keyBytes + row * l.keyRowBytes(),
                 valueBytes + row * l.valueRowBytes());
    }
  }
  layer.pos[seq] = start + numTokens - 1;
  return SK_OK;
}

sk_status CpuCache::appendVarlen(int32_t layerIndex, int32_t numSeqs,
                                 const int32_t *seqIds,
                                 const int32_t *cuSeqlens, const void *keys,
                                 const void *values, const float *scores,
                                 void *) {
  const CacheLayout &l = layout_;
  // Every score first: a rejected call changes nothing.
  if (sk_status status = checkScores(
          scores, static_cast<int64_t>(cuSeqlens[numSeqs]) * l.heads,
          "sk_cache_append_varlen"))
    return status;
  Layer &layer = layers_[layerIndex];
  auto *keyBytes = static_cast<const uint8_t *>(keys);
  auto *valueBytes = static_cast<const uint8_t *>(values);
  for (int32_t i = 0; i < numSeqs; ++i) {
    int32_t seq = seqIds[i];
    int64_t first = cuSeqlens[i], numTokens = cuSeqlens[i + 1] - first;
    if (numTokens == 0)
      continue;
    int64_t start = layer.pos[seq] + 1;
    // Token by token, as append_chunk does; rows are token-major here.
    for (int64_t t = 0; t < numTokens; ++t) {
      for (int32_t head = 0; head < l.heads; ++head) {
        size_t row = static_cast<size_t>(first + t) * l.heads + head;
        appendHead(layer, seq, head, start + t, scores[row],
                   keyBytes + row * l.keyRowBytes(),
                   valueBytes + row * l.valueRowBytes());
      }
    }
    layer.pos[seq] = start + numTokens - 1;
  }
  return SK_OK;
}

void CpuCache::view(int32_t layerIndex, sk_cache_view *out) const {
  // The C view hands out mutable pointers, as the decode op may read them in
  // place; the cache itself is logically const here.
  auto &layer = const_cast<Layer &>(layers_[layerIndex]);
  out->k_slots = layer.keys.data();
  out->v_slots = layer.values.data();
  out->slot_scores = layer.slotScores.data();
  out->slot_pos = layer.slotPos.data();
  out->tau = layer.tau.data();
  out->pool_count = layer.poolCount.data();
  out->pos = layer.pos.data();
}

sk_status CpuCache::isApproximate(int32_t seq, int32_t *approx) {
  *approx = 0;
  for (const Layer &layer : layers_)
    for (int32_t head = 0; head < layout_.heads; ++head)
      if (layer.support[layout_.row(seq, head)].approximate())
        *approx = 1;
  return SK_OK;
}

} // namespace

sk_status createCpuCache(const sk_cache_config &config,
                         std::unique_ptr<CacheBackend> *out) {
  auto cache = std::make_unique<CpuCache>(config);
  if (sk_status status = cache->allocate())
    return status;
  *out = std::move(cache);
  return SK_OK;
}

} // namespace sparsek::rt
