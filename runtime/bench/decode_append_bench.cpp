// Benchmark of one decode step of the CUDA KV cache: append one token (K, V,
// score) to every sequence of a batch in one layer, including the exact tau
// update, after warming the cache to a long context. Prints JSON.
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

extern "C" int skBenchLaunchEmpty(void *stream, int blocks, int threads,
                                  int launches);

namespace {

struct Options {
  int seqs = 256, heads = 8, k = 2048, w = 512, dim = 128, capacity = 16384;
  long context = 32768;
  int warmup = 5, iters = 50;
  int verifySeqs = 2; // sequences mirrored on the CPU cache and compared
};

bool parse(int argc, char **argv, Options *o) {
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
      o->capacity = value;
    else if (key == "--context")
      o->context = value;
    else if (key == "--iters")
      o->iters = value;
    else if (key == "--verify-seqs")
      o->verifySeqs = value;
    else
      return false;
  }
  return true;
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

} // namespace

int main(int argc, char **argv) {
  Options o;
  if (!parse(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: %s [--seqs N] [--heads H] [--k K] [--w W] "
                 "[--dim D] [--context T] [--capacity C] [--iters N]\n",
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
  // CPU mirror of the first sequences, to check the GPU result first.
  sk_cache_config cpuCfg = cfg;
  cpuCfg.backend = SK_BACKEND_CPU;
  cpuCfg.max_seqs = std::max(1, o.verifySeqs);
  sk_cache *mirror = nullptr;
  if (sk_status s = sk_cache_create(&cpuCfg, &mirror))
    return fail("sk_cache_create(cpu)", s);
  std::vector<int32_t> mirrorIds(o.verifySeqs);
  for (int32_t &id : mirrorIds)
    sk_cache_alloc_seq(mirror, &id);

  // Inputs: random bf16 rows (same every step: speed does not depend on
  // them) and a pool of N(0,1) scores, cycled, for many steps.
  const size_t rows = static_cast<size_t>(o.seqs) * o.heads;
  const size_t rowBytes = static_cast<size_t>(o.dim) * 2;
  const int scoreSteps = 4096;
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint8_t> kv(rows * rowBytes);
  for (uint8_t &b : kv)
    b = static_cast<uint8_t>(rng() & 0x3f); // small finite bf16 bytes
  std::vector<float> scores(scoreSteps * rows);
  for (float &s : scores)
    s = normal(rng);
  void *dKeys = mgpuMemAlloc(kv.size(), nullptr, false);
  void *dValues = mgpuMemAlloc(kv.size(), nullptr, false);
  void *dScores = mgpuMemAlloc(scores.size() * 4, nullptr, false);
  mgpuMemcpy(dKeys, kv.data(), kv.size(), nullptr);
  mgpuMemcpy(dValues, kv.data(), kv.size(), nullptr);
  mgpuMemcpy(dScores, scores.data(), scores.size() * 4, nullptr);
  void *stream = mgpuStreamCreate();
  mgpuStreamSynchronize(nullptr);
  if (sk_rt_get_status() != SK_OK)
    return fail("device setup", sk_rt_get_status());

  long step = 0;
  auto append = [&]() -> sk_status {
    const float *s = static_cast<const float *>(dScores) +
                     static_cast<size_t>(step % scoreSteps) * rows;
    if (step < o.context && o.verifySeqs > 0) {
      const float *hs = scores.data() + (step % scoreSteps) * rows;
      sk_status m = sk_cache_append_tokens(mirror, 0, &shape, o.verifySeqs,
                                           mirrorIds.data(), kv.data(),
                                           kv.data(), hs, nullptr);
      if (m)
        return m;
    }
    ++step;
    return sk_cache_append_tokens(cache, 0, &shape, o.seqs, ids.data(), dKeys,
                                  dValues, s, stream);
  };

  // Warm to the long context.
  for (long t = 0; t < o.context; ++t)
    if (sk_status s = append())
      return fail("warm-up append", s);
  if (sk_status s = sk_cache_check_device_error(cache, stream))
    return fail("warm-up", s);

  // Check: the mirrored sequences agree with the CPU model bit for bit on
  // positions/scores and within 1e-6 on tau.
  int verified = 0;
  if (o.verifySeqs > 0) {
    sk_cache_view g{}, c{};
    sk_cache_get_view(cache, 0, &g);
    sk_cache_get_view(mirror, 0, &c);
    const size_t n = static_cast<size_t>(o.verifySeqs) * o.heads * (o.k + o.w);
    std::vector<int64_t> gpos(n);
    std::vector<float> gscore(n), gtau(o.verifySeqs * o.heads);
    mgpuMemcpy(gpos.data(), g.slot_pos, n * 8, nullptr);
    mgpuMemcpy(gscore.data(), g.slot_scores, n * 4, nullptr);
    mgpuMemcpy(gtau.data(), g.tau, gtau.size() * 4, nullptr);
    mgpuStreamSynchronize(nullptr);
    bool same = std::memcmp(gpos.data(), c.slot_pos, n * 8) == 0 &&
                std::memcmp(gscore.data(), c.slot_scores, n * 4) == 0;
    for (size_t r = 0; r < gtau.size(); ++r)
      same = same && std::fabs(gtau[r] - c.tau[r]) <=
                         1e-6f * std::max(1.0f, std::fabs(c.tau[r]));
    if (!same) {
      std::fprintf(stderr, "GPU cache differs from the CPU model\n");
      return 1;
    }
    verified = o.verifySeqs;
  }

  // Time single decode steps with events: warm-up, then the median. A
  // 256 MiB memset queued first keeps the GPU busy while the host submits
  // the step, so the events bracket device time only; the second series
  // (GPU idle) also counts host-side validation and launch latency.
  const size_t busyWords = size_t(64) << 20;
  void *busy = mgpuMemAlloc(busyWords * 4, nullptr, false);
  void *start = sk_rt_event_create_timed(), *stop = sk_rt_event_create_timed();
  std::vector<double> times, timesIdle;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    for (int idle = 0; idle < 2; ++idle) {
      if (!idle)
        mgpuMemset32(busy, 0, busyWords, stream);
      mgpuEventRecord(start, stream);
      if (sk_status s = append())
        return fail("timed append", s);
      mgpuEventRecord(stop, stream);
      mgpuEventSynchronize(stop);
      double us = 1000.0 * sk_rt_event_elapsed_ms(start, stop);
      if (i >= o.warmup)
        (idle ? timesIdle : times).push_back(us);
    }
  }
  // Launch-overhead baseline in the same harness: one empty kernel with the
  // step's grid (one warp per sequence and head), and two of them back to
  // back (the floor of a two-launch step).
  std::vector<double> empty1, empty2;
  const int emptyBlocks = static_cast<int>(rows);
  for (int launches = 1; launches <= 2; ++launches) {
    for (int i = 0; i < o.warmup + o.iters; ++i) {
      mgpuMemset32(busy, 0, busyWords, stream);
      mgpuEventRecord(start, stream);
      if (skBenchLaunchEmpty(stream, emptyBlocks, 32, launches) != 0) {
        std::fprintf(stderr, "empty kernel launch failed\n");
        return 1;
      }
      mgpuEventRecord(stop, stream);
      mgpuEventSynchronize(stop);
      if (i >= o.warmup)
        (launches == 1 ? empty1 : empty2)
            .push_back(1000.0 * sk_rt_event_elapsed_ms(start, stop));
    }
  }
  mgpuMemFree(busy, nullptr);
  // Back-to-back steps: throughput when launches queue up.
  const int burst = 200;
  mgpuEventRecord(start, stream);
  for (int i = 0; i < burst; ++i)
    append();
  mgpuEventRecord(stop, stream);
  mgpuEventSynchronize(stop);
  double burstUs = 1000.0 * sk_rt_event_elapsed_ms(start, stop) / burst;
  if (sk_status s = sk_cache_check_device_error(cache, stream))
    return fail("timed run", s);
  if (sk_rt_get_status() != SK_OK)
    return fail("timing", sk_rt_get_status());
  int32_t approx = 0;
  sk_cache_seq_is_approximate(cache, ids[0], &approx);

  std::printf("{\n  \"benchmark\": \"runtime_decode_append\",\n"
              "  \"workload\": \"D1\",\n"
              "  \"shape\": {\"seqs\": %d, \"kv_heads\": %d, \"k\": %d, "
              "\"w\": %d, \"head_dim\": %d, \"dtype\": \"bf16\", "
              "\"score_capacity\": %d},\n"
              "  \"context_before_timing\": %ld,\n"
              "  \"warmup\": %d, \"iters\": %d,\n"
              "  \"median_us\": %.3f, \"min_us\": %.3f, \"max_us\": %.3f,\n"
              "  \"median_us_gpu_idle_incl_host_submit\": %.3f,\n"
              "  \"back_to_back_us_per_step\": %.3f,\n"
              "  \"empty_kernel_us\": %.3f,\n"
              "  \"two_empty_kernels_us\": %.3f,\n"
              "  \"verified_against_cpu_seqs\": %d,\n"
              "  \"seq0_tau_approximate\": %d\n}\n",
              o.seqs, o.heads, o.k, o.w, o.dim, o.capacity, o.context, o.warmup,
              o.iters, median(times),
              *std::min_element(times.begin(), times.end()),
              *std::max_element(times.begin(), times.end()), median(timesIdle),
              burstUs, median(empty1), median(empty2), verified, approx);
  sk_cache_destroy(cache);
  sk_cache_destroy(mirror);
  return 0;
}
