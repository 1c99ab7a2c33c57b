// crowdsec_decisions.hpp — CrowdSec's decisions as bannerwatch list entries.
//
// Contract: ParseDecisionStream reads one answer of a CrowdSec Local API's decisions stream
// (GET /v1/decisions/stream: {"new": [...] | null, "deleted": [...] | null}) whole or fails with
// InvalidArgument naming what is wrong; a decision of a scope bannerwatch does not take (Country,
// AS, ...) or whose value does not parse is skipped and counted, never an error for the rest.
// DecisionSet holds the decisions in force: a startup answer replaces the set, a later one adds
// and deletes by decision id; each decision lasts its "duration" from the moment it was received,
// and Expire() drops what has run out (so the set stays right while the API is unreachable).
// Entries() gives what a list of `types` enforces: one entry per distinct prefix. Not thread-safe:
// the daemon's main loop owns it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/policy/cidr.hpp"
#include "daemon/policy/feeds.hpp"

namespace bw {

struct CrowdsecDecision {
  int64_t id = 0;
  std::string type;  // "ban", "captcha", ... as CrowdSec names it (lower-cased)
  Prefix prefix;     // scope Ip: a host prefix; scope Range: the range
  absl::Duration duration;  // what was left when it was received (negative for deleted ones)
  SourceId scenario;        // "crowdsecurity/ssh-bf", "manual 'ban' from ...": the entry's source id
};

struct DecisionStream {
  std::vector<CrowdsecDecision> added, deleted;
  uint64_t skipped_scope = 0;  // decisions of scopes not taken (Country, AS, or not asked for)
  uint64_t skipped_value = 0;  // values that are not an address or prefix
};

// Which scopes are taken (policy crowdsec.scopes).
struct DecisionScopes {
  bool ip = true, range = true;
};

// Go's time.Duration text, as CrowdSec writes it: "3h59m58.12s", "-15.2ms", "1m0s", "0s".
absl::StatusOr<absl::Duration> ParseGoDuration(absl::string_view s);

absl::StatusOr<DecisionStream> ParseDecisionStream(absl::string_view body,
                                                   const DecisionScopes& scopes,
                                                   const PrefixOptions& opts = {});

class DecisionSet {
 public:
  // A startup answer (`startup`: the set becomes exactly its "new" decisions) or a delta.
  // Returns whether the set changed.
  bool Apply(const DecisionStream& s, bool startup, absl::Time now);
  // Drops the decisions that ended by `now`; returns how many.
  size_t Expire(absl::Time now);
  // When the next decision ends (InfiniteFuture: none).
  absl::Time NextExpiry() const { return next_expiry_; }
  void Clear() {
    by_id_.clear();
    next_expiry_ = absl::InfiniteFuture();
  }

  size_t size() const { return by_id_.size(); }
  // One entry per distinct prefix among the decisions of one of `types`, in decision id order;
  // `line` is the deciding decision's id (the lowest), clamped to 32 bits.
  struct Entry {
    Prefix prefix;
    uint32_t id = 0;
    SourceId scenario;
  };
  std::vector<Entry> Entries(const std::vector<std::string>& types) const;

  // The set as JSON, to carry it over a restart (the daemon's crowdsec-decisions file):
  // {"url": URL, "decisions": [{"id", "type", "prefix", "expires" (Unix seconds), "scenario"}]}.
  std::string Save(const std::string& url) const;
  // The decisions of a Save() for `url` that have not ended by `now`. A file for another URL is
  // an empty set (not an error: the policy changed); one that does not parse is an error.
  static absl::StatusOr<DecisionSet> Load(absl::string_view text, const std::string& url,
                                          absl::Time now);

 private:
  struct Held {
    std::string type;
    Prefix prefix;
    absl::Time expires;
    SourceId scenario;
  };
  absl::Time Earliest() const;

  absl::flat_hash_map<int64_t, Held> by_id_;
  absl::Time next_expiry_ = absl::InfiniteFuture();  // kept: the loop asks every 100 ms
};

}  // namespace bw
