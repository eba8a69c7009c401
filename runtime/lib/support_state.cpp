// Incremental exact tau for the CPU cache (see support_state.h).
#include "support_state.h"

#include <algorithm>
#include <functional>
#include <limits>

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

void heapPush(std::vector<float> &heap, float value) {
  heap.push_back(value);
  std::push_heap(heap.begin(), heap.end(), std::greater<float>());
}

float heapPop(std::vector<float> &heap) {
  std::pop_heap(heap.begin(), heap.end(), std::greater<float>());
  float value = heap.back();
  heap.pop_back();
  return value;
}
} // namespace

sparsek::rt::SupportState::SupportState(int64_t budget, int64_t capacity)
    : budget_(budget), capacity_(capacity) {
  reset();
}

void sparsek::rt::SupportState::reset() {
  upper_.clear();
  middle_.clear();
  middleSum_ = 0.0;
  candidates_ = 0;
  approximate_ = false;
  tau_ = budget_ == 0 ? kInf : -kInf;
}

void sparsek::rt::SupportState::add(float score) {
  ++candidates_;
  if (budget_ == 0)
    return; // tau = +inf: no candidate is ever selected.
  if (candidates_ <= budget_) {
    // At most k candidates: every one has p = 1 and tau = -inf (SPEC 3).
    heapPush(upper_, score);
    return;
  }
  if (score <= tau_)
    return; // p = 0 now, and tau never decreases.
  if (kept() >= capacity_) {
    // Keep the highest scores; whatever is dropped makes tau a lower bound.
    approximate_ = true;
    float lowest = middle_.empty() ? upper_.front() : middle_.front();
    if (score <= lowest)
      return;
    dropLowestKept();
  }
  insertKept(score);
  solve();
}

void sparsek::rt::SupportState::insertKept(float score) {
  // Classify for the piece of f just right of tau: z > tau + 1 keeps p = 1.
  if (static_cast<double>(score) > tau_ + 1.0) {
    heapPush(upper_, score);
  } else {
    heapPush(middle_, score);
    middleSum_ += score;
  }
}

void sparsek::rt::SupportState::dropLowestKept() {
  if (!middle_.empty())
    middleSum_ -= heapPop(middle_);
  else
    heapPop(upper_);
}

void sparsek::rt::SupportState::solve() {
  // Walk the breakpoints of f(x) = sum clip(z - x, 0, 1) upwards from the
  // old tau (f there is >= k) until the linear piece holding f = k.
  double floor = tau_;
  const double k = static_cast<double>(budget_);
  for (;;) {
    const double upperCount = static_cast<double>(upper_.size());
    const double middleCount = static_cast<double>(middle_.size());
    double next = kInf;
    if (!middle_.empty())
      next = middle_.front();
    if (!upper_.empty())
      next = std::min(next, static_cast<double>(upper_.front()) - 1.0);
    if (middleCount > 0) {
      double t = (middleSum_ + upperCount - k) / middleCount;
      // At t == next, f may stay flat at k past the breakpoint (a middle
      // entry reaching p = 0 with nothing else in the middle); crossing
      // finds the largest root, as SPEC 3 asks.
      if (t < next) {
        tau_ = std::max(t, floor);
        break;
      }
    } else if (upperCount <= k) {
      // f is flat (= U) up to the next breakpoint: with U = k, tau is its
      // largest point min(upper) - 1, the hard top-k case. U < k only
      // happens after capacity overflow; tau then stays put.
      tau_ = upperCount == k ? next : floor;
      break;
    }
    // The root lies past `next`: cross it.
    floor = std::max(floor, next);
    while (!middle_.empty() && middle_.front() <= next)
      middleSum_ -= heapPop(middle_);
    while (!upper_.empty() &&
           static_cast<double>(upper_.front()) - 1.0 <= next) {
      float moved = heapPop(upper_);
      heapPush(middle_, moved);
      middleSum_ += moved;
    }
  }
  // Scores at or below the new tau never come back (SPEC 6).
  while (!middle_.empty() && middle_.front() <= tau_)
    middleSum_ -= heapPop(middle_);
}
