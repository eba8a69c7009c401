// Benchmark of filling the CUDA KV cache from a prompt: one
// sk_cache_append_chunk of `tokens` tokens per sequence (every KV head),
// timed with CUDA events, for N(0,1) scores and for rising scores (every
// candidate enters the pool). The first sequence of each kind is checked
// against token-by-token appends on the CPU cache first. Prints JSON.
#include "sparsek/runtime/kv_cache.h"
#include "sparsek/runtime/mgpu.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

struct Options {
  int seqs = 8, heads = 8, k = 2048, w = 512, dim = 128;
  int capacity = 4 * 2048 + 64; // the Python package's default for k
  long tokens = 32767;          // a context of 32768 minus the query
};

bool parse(int argc, char **argv, Options *o) {
  bool capacitySet = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    long value = std::atol(argv[i + 1]);
    if (key == "--seqs")
      o->seqs = value;
    else if (key == "--heads")
      o->heads = value;
    else if (key == "--k")
      o->k = value;
    else if (key == "--w")
      o->w = value;
    else if (key == "--dim")
      o->dim = value;
    else if (key == "--capacity")
      o->capacity = value, capacitySet = true;
    else if (key == "--tokens")
      o->tokens = value;
    else
      return false;
  }
  if (!capacitySet)
    o->capacity = std::max(4 * o->k + 64, o->k + 1);
  return o->seqs >= 1 && o->tokens >= 1;
}

int fail(const char *what, sk_status status) {
  char rt[512];
  sk_rt_get_last_error(rt, sizeof(rt));
  std::fprintf(stderr, "%s failed: %s (%s) [runtime: %s]\n", what,
               sk_status_name(status), sk_cache_last_error(), rt);
  return 1;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Compares sequence `seq` of the GPU cache with sequence 0 of the CPU one:
/// pool and window bit for bit, tau within 1e-6 relative.
bool sameAsCpu(sk_cache *gpu, int32_t seq, sk_cache *cpu, const Options &o) {
  sk_cache_view g{}, c{};
  sk_cache_get_view(gpu, 0, &g);
  sk_cache_get_view(cpu, 0, &c);
  const size_t slots = static_cast<size_t>(o.heads) * (o.k + o.w);
  const size_t first = static_cast<size_t>(seq) * slots;
  const size_t rowBytes = static_cast<size_t>(o.dim) * 2;
  std::vector<int64_t> pos(slots);
  std::vector<float> score(slots), tau(o.heads);
  std::vector<uint8_t> keys(slots * rowBytes), values(slots * rowBytes);
  mgpuMemcpy(pos.data(), g.slot_pos + first, slots * 8, nullptr);
  mgpuMemcpy(score.data(), g.slot_scores + first, slots * 4, nullptr);
  mgpuMemcpy(tau.data(), g.tau + static_cast<size_t>(seq) * o.heads,
             o.heads * 4, nullptr);
  mgpuMemcpy(keys.data(), static_cast<uint8_t *>(g.k_slots) + first * rowBytes,
             keys.size(), nullptr);
  mgpuMemcpy(values.data(),
             static_cast<uint8_t *>(g.v_slots) + first * rowBytes,
             values.size(), nullptr);
  mgpuStreamSynchronize(nullptr);
  bool same = std::memcmp(pos.data(), c.slot_pos, slots * 8) == 0 &&
              std::memcmp(score.data(), c.slot_scores, slots * 4) == 0 &&
              std::memcmp(keys.data(), c.k_slots, keys.size()) == 0 &&
              std::memcmp(values.data(), c.v_slots, values.size()) == 0;
  for (int h = 0; h < o.heads; ++h) {
    if (std::isinf(tau[h]) || std::isinf(c.tau[h]))
      same = same && tau[h] == c.tau[h];
    else
      same = same && std::fabs(tau[h] - c.tau[h]) <=
                         1e-6f * std::max(1.0f, std::fabs(c.tau[h]));
  }
  return same;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  if (!parse(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: %s [--seqs N] [--heads H] [--k K] [--w W] "
                 "[--dim D] [--tokens T] [--capacity C]\n",
                 argv[0]);
    return 2;
  }
  if (sk_status s = sk_rt_init())
    return fail("sk_rt_init", s);
  sk_cache_config cfg{};
  cfg.backend = SK_BACKEND_CUDA;
  cfg.num_layers = 1;
  cfg.num_kv_heads = o.heads;
  cfg.k = o.k;
  cfg.w = o.w;
  cfg.head_dim = cfg.value_dim = o.dim;
  cfg.dtype = SK_DTYPE_BF16;
  cfg.max_seqs = o.seqs;
  cfg.score_capacity = o.capacity;
  sk_kv_shape shape{o.heads, o.dim, o.dim, SK_DTYPE_BF16};
  sk_cache *cache = nullptr;
  if (sk_status s = sk_cache_create(&cfg, &cache))
    return fail("sk_cache_create", s);
  std::vector<int32_t> ids(o.seqs);
  for (int32_t &id : ids)
    if (sk_status s = sk_cache_alloc_seq(cache, &id))
      return fail("sk_cache_alloc_seq", s);

  // Inputs ([H][T] rows): random bf16 bytes with distinct rows, so that a
  // misplaced copy shows in the check.
  const size_t rows = static_cast<size_t>(o.heads) * o.tokens;
  const size_t rowBytes = static_cast<size_t>(o.dim) * 2;
  std::mt19937 rng(1234);
  std::vector<uint8_t> kv(rows * rowBytes);
  for (uint8_t &b : kv)
    b = static_cast<uint8_t>(rng() & 0x3f); // small finite bf16 bytes
  void *dKeys = mgpuMemAlloc(kv.size(), nullptr, false);
  void *dValues = mgpuMemAlloc(kv.size(), nullptr, false);
  void *dScores = mgpuMemAlloc(rows * 4, nullptr, false);
  mgpuMemcpy(dKeys, kv.data(), kv.size(), nullptr);
  mgpuMemcpy(dValues, kv.data(), kv.size(), nullptr);
  void *stream = mgpuStreamCreate();
  void *start = sk_rt_event_create_timed(), *stop = sk_rt_event_create_timed();
  mgpuStreamSynchronize(nullptr);
  if (sk_rt_get_status() != SK_OK)
    return fail("device setup", sk_rt_get_status());

  std::string results;
  const char *kinds[] = {"normal", "rising"};
  for (int kind = 0; kind < 2; ++kind) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> scores(rows);
    for (size_t r = 0; r < rows; ++r) {
      const float t = static_cast<float>(r % o.tokens);
      scores[r] = kind == 0 ? normal(rng) : 1e-3f * t + 0.01f * normal(rng);
    }
    mgpuMemcpy(dScores, scores.data(), rows * 4, nullptr);
    mgpuStreamSynchronize(nullptr);
    std::vector<double> ms;
    for (int32_t seq : ids) {
      sk_cache_reset_seq(cache, seq);
      mgpuEventRecord(start, stream);
      sk_status s =
          sk_cache_append_chunk(cache, 0, &shape, seq, o.tokens, dKeys, dValues,
                                static_cast<float *>(dScores), stream);
      mgpuEventRecord(stop, stream);
      mgpuEventSynchronize(stop);
      if (s)
        return fail("sk_cache_append_chunk", s);
      ms.push_back(sk_rt_event_elapsed_ms(start, stop));
    }
    if (sk_status s = sk_cache_check_device_error(cache, stream))
      return fail("fill", s);
    // The last sequence against the CPU cache (token by token).
    sk_cache_config cpuCfg = cfg;
    cpuCfg.backend = SK_BACKEND_CPU;
    cpuCfg.max_seqs = 1;
    sk_cache *cpu = nullptr;
    int32_t cpuSeq = -1;
    if (sk_status s = sk_cache_create(&cpuCfg, &cpu))
      return fail("sk_cache_create(cpu)", s);
    sk_cache_alloc_seq(cpu, &cpuSeq);
    if (sk_status s =
            sk_cache_append_chunk(cpu, 0, &shape, cpuSeq, o.tokens, kv.data(),
                                  kv.data(), scores.data(), nullptr))
      return fail("cpu append", s);
    const bool same = sameAsCpu(cache, ids.back(), cpu, o);
    sk_cache_destroy(cpu);
    if (!same) {
      std::fprintf(stderr, "%s: GPU cache differs from the CPU model\n",
                   kinds[kind]);
      return 1;
    }
    // The first fill pays one-time costs (module load); report it apart.
    const double first = ms.front();
    if (ms.size() > 1)
      ms.erase(ms.begin());
    char line[512];
    std::snprintf(line, sizeof(line),
                  "%s    \"%s\": {\"median_ms\": %.4f, \"min_ms\": %.4f, "
                  "\"max_ms\": %.4f, \"first_ms\": %.4f, \"sequences\": %d, "
                  "\"verified_against_cpu\": true}",
                  kind ? ",\n" : "", kinds[kind], median(ms),
                  *std::min_element(ms.begin(), ms.end()),
                  *std::max_element(ms.begin(), ms.end()), first, o.seqs);
    results += line;
  }
  if (sk_rt_get_status() != SK_OK)
    return fail("timing", sk_rt_get_status());
  std::printf("{\n  \"benchmark\": \"runtime_prompt_fill\",\n"
              "  \"shape\": {\"kv_heads\": %d, \"k\": %d, \"w\": %d, "
              "\"head_dim\": %d, \"dtype\": \"bf16\", \"score_capacity\": %d, "
              "\"tokens\": %ld},\n"
              "  \"per_sequence\": {\n%s\n  }\n}\n",
              o.heads, o.k, o.w, o.dim, o.capacity, o.tokens, results.c_str());
  sk_cache_destroy(cache);
  return 0;
}
