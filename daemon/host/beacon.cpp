// beacon.cpp — see beacon.hpp for the score and the tracker's contract.
#include "daemon/host/beacon.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace bw {
namespace {

// The two constants of the score (beacon.hpp: chosen so that +-10 % jitter over 30 starts scores
// at least 0.8 while random intervals stay below it; the measured rates are there).
constexpr double kSkewSpreadFloor = 0.3;  // Bowley's spread: at least 30 % of the median interval
constexpr double kMadScale = 2.5;         // mad_score 0 at a MAD of 40 % of the median interval

// Quantile p of sorted `x` (non-empty) by linear interpolation between order statistics (R type 7).
double Quantile(const std::vector<double>& x, double p) {
  const double h = static_cast<double>(x.size() - 1) * p;
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= x.size()) return x.back();
  return x[lo] + (h - static_cast<double>(lo)) * (x[lo + 1] - x[lo]);
}

int64_t RoundNs(double v) { return static_cast<int64_t>(std::llround(v)); }

}  // namespace

absl::Status ValidateBeaconOptions(const BeaconOptions& o) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("beacon options: ", what));
  };
  if (o.window < 4) return bad(absl::StrCat("window ", o.window, " is below 4 (3 intervals)"));
  if (o.min_connections < 4) {
    return bad(absl::StrCat("min_connections ", o.min_connections, " is below 4 (3 intervals)"));
  }
  if (o.min_connections > o.window) {
    return bad(absl::StrCat("min_connections ", o.min_connections, " is above window ", o.window,
                            ": no pair could ever alert"));
  }
  // !(a > b) rather than a <= b so that NaN is refused too.
  if (!(o.threshold > 0) || !(o.threshold <= 1)) {
    return bad(absl::StrCat("threshold ", o.threshold, " is outside (0, 1]"));
  }
  if (o.full_count == 0) return bad("full_count is 0");
  if (o.max_pairs == 0) return bad("max_pairs is 0");
  if (o.realert < absl::ZeroDuration()) return bad("realert is negative");
  if (o.idle <= absl::ZeroDuration()) return bad("idle is not positive");
  return absl::OkStatus();
}

BeaconScore ScoreStarts(std::span<const int64_t> starts_ns, size_t full_count) {
  BeaconScore s;
  s.connections = starts_ns.size();
  if (starts_ns.size() < 4) return s;

  std::vector<int64_t> t(starts_ns.begin(), starts_ns.end());
  std::sort(t.begin(), t.end());
  // Intervals in double: exact below 2^53 ns (104 days), and the quantiles interpolate anyway.
  std::vector<double> iv(t.size() - 1);
  for (size_t i = 0; i + 1 < t.size(); ++i) iv[i] = static_cast<double>(t[i + 1] - t[i]);
  std::sort(iv.begin(), iv.end());  // already non-negative: t is sorted

  const double q1 = Quantile(iv, 0.25), q2 = Quantile(iv, 0.5), q3 = Quantile(iv, 0.75);
  // The spread Bowley divides by is at least 30 % of the period: quartiles a few per cent apart
  // are a beacon's jitter, whose sampling noise would otherwise swing Bowley from -1 to 1 (RITA's
  // whole-second timestamps make such differences vanish; nanoseconds keep them).
  const double spread = std::max(q3 - q1, kSkewSpreadFloor * q2);
  if (spread > 0) s.bowley = std::clamp((q1 + q3 - 2 * q2) / spread, -1.0, 1.0);
  s.skew_score = std::clamp(1 - std::fabs(s.bowley), 0.0, 1.0);

  std::vector<double> dev(iv.size());
  for (size_t i = 0; i < iv.size(); ++i) dev[i] = std::fabs(iv[i] - q2);
  std::sort(dev.begin(), dev.end());
  const double mad = Quantile(dev, 0.5);
  // Relative dispersion (beacon.hpp says why not RITA's 30 s): MAD of 40 % of the period scores 0.
  if (q2 > 0) s.mad_score = std::clamp(1 - kMadScale * mad / q2, 0.0, 1.0);

  const size_t full = std::max<size_t>(full_count, 1);
  s.count_score =
      std::min(1.0, static_cast<double>(starts_ns.size()) / static_cast<double>(full));

  const double mean = (s.skew_score + s.mad_score + s.count_score) / 3;
  // The 1e-9 absorbs the error of the sum and division (a few ulps of 1000), so that a mean that is
  // 0.95 on paper (0.9500000000000001 in doubles) does not round up to 0.951; no real difference
  // of scores is that small.
  s.score = std::clamp(std::ceil(mean * 1000 - 1e-9) / 1000, 0.0, 1.0);
  s.median_interval_ns = RoundNs(q2);
  s.mad_ns = RoundNs(mad);
  return s;
}

BeaconTracker::BeaconTracker(BeaconOptions o)
    : o_(o),
      realert_ns_(absl::ToInt64Nanoseconds(o.realert)),
      idle_ns_(absl::ToInt64Nanoseconds(o.idle)) {
  // Zero sizes would divide by zero or keep nothing; ValidateBeaconOptions refuses them for
  // configuration, the tracker survives them.
  o_.window = std::max<size_t>(o_.window, 1);
  o_.max_pairs = std::max<size_t>(o_.max_pairs, 1);
  o_.full_count = std::max<size_t>(o_.full_count, 1);
}

std::optional<BeaconAlert> BeaconTracker::Observe(const BeaconKey& key, uint64_t flow_id,
                                                  int64_t ts_ns) {
  Pair* p;
  if (auto it = index_.find(key); it != index_.end()) {
    p = &*it->second;
    for (const Start& s : p->ring) {
      if (s.flow_id == flow_id) return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it->second);  // iterators stay valid across splice
  } else {
    if (lru_.size() >= o_.max_pairs) {
      index_.erase(lru_.back().key);
      lru_.pop_back();
      ++evicted_;
    }
    lru_.emplace_front();
    p = &lru_.front();
    p->key = key;
    p->last_seen_ns = ts_ns;
    index_.emplace(key, lru_.begin());
  }

  if (p->ring.size() < o_.window) {
    // Grow by doubling up to exactly `window`: most pairs see a connection or two and should not
    // cost a full window; the bound in beacon.hpp holds without slack.
    if (p->ring.size() == p->ring.capacity()) {
      p->ring.reserve(std::min(o_.window, std::max<size_t>(4, 2 * p->ring.capacity())));
    }
    p->ring.push_back({ts_ns, flow_id});
  } else {
    p->ring[p->next] = {ts_ns, flow_id};
    p->next = (p->next + 1) % o_.window;
  }
  p->last_seen_ns = std::max(p->last_seen_ns, ts_ns);

  if (p->ring.size() < o_.min_connections) return std::nullopt;
  // Within realert the score could not alert anyway: skip computing it.
  if (p->last_alert_ns && ts_ns - *p->last_alert_ns < realert_ns_) return std::nullopt;

  scratch_.clear();
  for (const Start& s : p->ring) scratch_.push_back(s.ts_ns);
  BeaconScore score = ScoreStarts(scratch_, o_.full_count);
  if (score.score < o_.threshold) return std::nullopt;

  p->last_alert_ns = ts_ns;
  ++alerts_;
  const auto [lo, hi] = std::minmax_element(scratch_.begin(), scratch_.end());
  return BeaconAlert{.key = p->key, .score = score, .first_ns = *lo, .last_ns = *hi};
}

void BeaconTracker::Expire(int64_t now_ns) {
  // A full walk rather than from the LRU tail: arrival order is not time order when events from
  // several CPUs interleave, and the walk is bounded by max_pairs.
  for (auto it = lru_.begin(); it != lru_.end();) {
    if (now_ns - it->last_seen_ns >= idle_ns_) {
      index_.erase(it->key);
      it = lru_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace bw
