// beacon.hpp — beacon detection: does a local process (or the host) open connections to one
// remote address at a regular rhythm, as command-and-control implants "checking in" do?
//
// Contract: BeaconTracker keeps, per pair (process name, uid, remote address), the start times of
// its most recent connections and scores their periodicity with ScoreStarts, the time half of
// RITA's beacon score (Active Countermeasures, rita-legacy pkg/beacon/analyzer.go) with one change
// (relative dispersion, below). It returns an alert when a start lifts a pair's score to the
// threshold. Pure userspace and single-threaded: the caller feeds the connection starts it already
// sees from kernel events and serialises calls. No I/O, no clock of its own: every time is the
// caller's (nanoseconds, one clock for all calls, e.g. CLOCK_BOOTTIME of the events).
//
// The score, as an analyst reads it. The starts are sorted; the intervals are the differences of
// consecutive starts (n starts give n-1 intervals). Quartiles Q1, Q2 (the median), Q3 of the
// intervals are linearly interpolated between order statistics (Hyndman & Fan / R type 7, the
// default of R and numpy: sorted x[0..m-1], quantile p at h = (m-1)p is x[floor h] + (h - floor h)
// * (x[floor h + 1] - x[floor h])). Three parts, each in [0, 1]:
//   skew_score  = 1 - |Bowley|, Bowley = (Q1 + Q3 - 2 Q2) / max(Q3 - Q1, 0.3 Q2), clamped to
//                 [-1, 1]; 0 when both are 0. A beacon's intervals are symmetric around its
//                 period, whatever its jitter. The floor on the spread keeps the sampling noise of
//                 quartiles a few per cent apart (a beacon's jitter) from swinging Bowley from -1
//                 to 1; RITA's whole-second timestamps make such differences vanish.
//   mad_score   = max(0, 1 - 2.5 MAD / median), MAD = median of |interval - median|; 0 when the
//                 median interval is 0. A beacon's intervals stay close to its period: jitter of
//                 +-10 % uniform scores about 0.85; a MAD of 40 % of the period or more scores 0.
//   count_score = min(1, starts / full_count): a handful of starts is weak evidence (20 by
//                 default: 20 starts scored reach 1).
//   score       = ceil(mean of the three * 1000) / 1000, rounded up to 3 decimals as RITA does
//                 (less 1e-9 before ceil, so that a mean of 0.95 on paper, computed in doubles
//                 as 0.9500000000000001, is 0.95, not 0.951).
// Fewer than 4 starts (3 intervals): every part and the score are 0.
// Differences from RITA: RITA scores dispersion absolutely (1 - MAD / 30 s). That ties the score
// to wall-clock seconds: a beacon every 2 s with 40 % jitter would score as well as a perfect one,
// and tests that compress an hour into seconds would score differently from the real thing. Here
// dispersion is relative to the period, so the same rhythm scores the same at 100 ms or at 1 h.
// RITA takes quartiles at the nearest rank (x[round(p(m-1))]) and also zeroes Bowley when Q2
// equals Q1 or Q3 (ties, common in its second-resolution logs, rare in nanoseconds). RITA's
// count part is relative to the length of its dataset and it adds a data-size score; there is no
// dataset length in a stream and no byte counts here.
//
// How well it separates (a simulation of 4000 series each, and tests/unit/beacon_test.cpp's seeds):
// with 30 starts, 0.03 % of beacons with +-10 % uniform jitter score below 0.8 (lowest 0.795),
// no Poisson series reaches it (highest 0.72), 0.2 % of series with uniform random intervals in
// [0.1 s, 3 s] do (highest 0.84: a low sample MAD lifts them). With 64 starts (the default window)
// none of either kind is on the wrong side. Beacons with +-20 % jitter score below 0.8 in 13 % of
// 30-start series and 2 % of 64-start ones: lower the threshold to catch looser rhythms, at the
// price of more random series reaching it. (The first form, RITA's Bowley over Q3 - Q1 and a MAD
// factor of 2, missed 4.2 % of the +-10 % beacons at 30 starts: Bowley's noise.)
// What it does not see: a beacon with random sleep (a uniform 0.1..3 s delay, Poisson arrivals)
// scores like the random traffic it imitates; a beacon whose period is longer than `idle` is
// forgotten between beats; the process name is the task's comm, which a process chooses. Keys are
// exactly as given: the caller decides whether to feed a per-process key, a host key (who == ""),
// or both.
//
// Memory is bounded: at most max_pairs pairs of at most `window` starts (16 bytes each: time and
// flow id) — for the defaults 4096 * 64 * 16 B = 4 MiB of starts, plus about 250 bytes per pair
// (key, list node, index slot, allocator overhead; 1 MiB at 4096 pairs) plus the length of `who`
// beyond the string's inline buffer (a comm is at most 15 characters and fits it). Beyond
// max_pairs the least recently seen pair is evicted and counted: a host that reaches more than
// max_pairs distinct pairs between two beats of a beacon makes the tracker forget the beacon
// (evicted() says so; raise max_pairs).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace bw {

struct BeaconOptions {
  size_t min_connections = 10;  // starts in the window needed before a pair can alert
  size_t window = 64;           // most recent starts kept and scored per pair (a ring)
  double threshold = 0.8;       // alert when score >= threshold
  absl::Duration realert = absl::Hours(1);  // a pair alerts again at most this often
  absl::Duration idle = absl::Hours(24);    // a pair with no start for this long is forgotten
  size_t max_pairs = 4096;  // pairs tracked; beyond, the least recently seen one is evicted
  size_t full_count = 20;   // count_score reaches 1 at this many starts scored
};

// InvalidArgument, naming the field, for options under which the tracker could never alert or
// would alert on nothing: window < 4 or min_connections < 4 (the score needs 3 intervals),
// min_connections > window, threshold outside (0, 1], full_count or max_pairs 0, realert < 0,
// idle <= 0. BeaconTracker itself takes any options (it raises zero sizes to 1).
absl::Status ValidateBeaconOptions(const BeaconOptions& o);

// Who talks to which remote address. IPv4 fills remote[0..3] (the rest zero), as Prefix does.
struct BeaconKey {
  std::string who;  // process name (comm); "" = the host as a whole
  uint32_t uid = 0;
  uint8_t family = 0;  // 4 or 6 (AF_INET/AF_INET6 also work: only equality matters)
  std::array<uint8_t, 16> remote{};

  friend bool operator==(const BeaconKey&, const BeaconKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const BeaconKey& k) {
    return H::combine(std::move(h), k.who, k.uid, k.family, k.remote);
  }
};

struct BeaconScore {
  double score = 0;  // mean of the three parts, rounded up to 3 decimals
  double skew_score = 0, mad_score = 0, count_score = 0;
  double bowley = 0;  // Bowley skewness of the intervals, in [-1, 1]; 0 when Q3 == Q1
  int64_t median_interval_ns = 0, mad_ns = 0;  // median interval and its MAD, rounded to ns
  size_t connections = 0;                       // starts scored
};

// The score of connection starts (ns, any order; sorted inside), as the file comment defines it.
// full_count 0 counts as 1.
BeaconScore ScoreStarts(std::span<const int64_t> starts_ns, size_t full_count);

struct BeaconAlert {
  BeaconKey key;
  BeaconScore score;
  int64_t first_ns = 0, last_ns = 0;  // earliest and latest start scored
};

class BeaconTracker {
 public:
  explicit BeaconTracker(BeaconOptions o);

  // One connection start at ts_ns. `flow_id` identifies the connection (a hash of its 5-tuple): a
  // start whose flow id is already in the pair's window is ignored entirely (a retransmitted SYN
  // is not a new connection; it does not refresh the pair either). The window keeps the most
  // recent `window` starts in arrival order. Returns an alert when, after this start, the pair has
  // >= min_connections starts, its score is >= threshold, and it has not alerted in the last
  // `realert` (by ts_ns). A pair whose score stays high alerts again once `realert` has passed.
  std::optional<BeaconAlert> Observe(const BeaconKey& key, uint64_t flow_id, int64_t ts_ns);

  // Forgets every pair whose latest start is `idle` or more before now_ns, with its alert
  // history (call now and then with the current time; it walks all pairs).
  void Expire(int64_t now_ns);

  size_t pairs() const { return lru_.size(); }
  uint64_t evicted() const { return evicted_; }  // pairs dropped at max_pairs (not by Expire)
  uint64_t alerts() const { return alerts_; }

 private:
  struct Start {
    int64_t ts_ns;
    uint64_t flow_id;
  };
  struct Pair {
    BeaconKey key;
    std::vector<Start> ring;  // grows to `window`, then `next` is the oldest, overwritten next
    size_t next = 0;
    int64_t last_seen_ns = 0;  // latest start (by time, not arrival)
    std::optional<int64_t> last_alert_ns;
  };
  // Most recently seen first; the index points into it, so that eviction and a touch are O(1).
  using Lru = std::list<Pair>;

  BeaconOptions o_;
  int64_t realert_ns_;
  int64_t idle_ns_;
  Lru lru_;
  absl::flat_hash_map<BeaconKey, Lru::iterator> index_;
  std::vector<int64_t> scratch_;  // the window's times, reused by every score
  uint64_t evicted_ = 0;
  uint64_t alerts_ = 0;
};

}  // namespace bw
