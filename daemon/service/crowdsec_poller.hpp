// crowdsec_poller.hpp — a CrowdSec Local API's decisions stream, asked on a thread of its own.
//
// Contract: the thread asks GET <url>v1/decisions/stream every `poll` with the bouncer key in
// X-Api-Key: with startup=true the first time, after every failure (the API counts a delta as
// delivered once it answers, so an answer lost on the way would lose it; the whole set after a
// failure loses nothing) and every `resync` (deltas can miss decisions written meanwhile), a deadline of `timeout` for the whole request and at most
// kMaxAnswerBytes of answer. The answer is parsed on the thread (a startup answer of 100 k
// decisions is about 25 MB of JSON). The main loop learns of results through fd() (an eventfd) and
// takes them, in order, with Take(); a failed poll is a result too (error set) and changes nothing
// of what the daemon enforces. Nothing here blocks the main loop: the destructor stops the thread,
// aborting a request in progress within about 100 ms.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "daemon/policy/crowdsec_decisions.hpp"
#include "daemon/policy/policy.hpp"
#include "maps/maps.hpp"

namespace bw {

// A bigger answer is refused (a million decisions is about 250 MB).
inline constexpr size_t kMaxAnswerBytes = size_t{512} << 20;

class CrowdsecPoller {
 public:
  struct Result {
    bool startup = false;  // the whole set (replaces what the daemon holds) or a delta
    absl::Status error;    // not ok: the poll failed; `stream` is empty
    DecisionStream stream;
    absl::Time at;           // when the answer came
    absl::Duration took;     // request and parse
    size_t bytes = 0;        // of the answer
  };

  // Starts the thread; the first poll goes out at once.
  static absl::StatusOr<std::unique_ptr<CrowdsecPoller>> Start(const CrowdsecSettings& s,
                                                                 const PrefixOptions& opts);
  ~CrowdsecPoller();
  CrowdsecPoller(const CrowdsecPoller&) = delete;
  CrowdsecPoller& operator=(const CrowdsecPoller&) = delete;

  int fd() const { return event_.get(); }
  const CrowdsecSettings& settings() const { return settings_; }
  // Every result since the last call, oldest first (clears the eventfd).
  std::vector<Result> Take();

 private:
  CrowdsecPoller(const CrowdsecSettings& s, const PrefixOptions& opts, Fd event)
      : settings_(s), opts_(opts), event_(std::move(event)) {}
  void Loop();
  Result Poll(bool startup);

  const CrowdsecSettings settings_;
  const PrefixOptions opts_;
  Fd event_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Result> done_;  // guarded by mu_
  bool stop_ = false;        // guarded by mu_
  std::atomic<bool> abort_{false};  // read by the transfer's progress callback
  std::thread thread_;
};

}  // namespace bw
