// policy_lookup.hpp — EVE metadata (list names, tags, reasons, source ids, watched ports) from a
// compiled policy, shared by the daemon and the offline scanner.
//
// Contract: answers from the CompiledPolicy last given to set_policy() (not owned; null: unknown
// everything). Interface names are the subclass's business (live ifindex vs a capture's name).
// EveOptionsFor turns the policy's `eve:` settings into the formatter's options, the host name
// (gethostname) standing in for an unset eve.host.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "daemon/events/eve_writer.hpp"
#include "daemon/policy/policy.hpp"

namespace bw {

class PolicyEveLookup : public EveLookup {
 public:
  void set_policy(const CompiledPolicy* c) {
    policy_ = c;
    ports_.clear();
    if (c) ports_.insert(c->ports.begin(), c->ports.end());
  }
  const CompiledPolicy* policy() const { return policy_; }

  bool List(uint32_t id, EveListInfo* out) const override {
    const CompiledList* l = policy_ ? policy_->list(id) : nullptr;
    if (!l) return false;
    out->name = l->name;
    out->tags = l->tags;
    out->reason = l->reason;
    return true;
  }
  std::string_view EntrySourceId(uint32_t ref) const override {
    const CompiledEntry* e = policy_ ? policy_->entry(ref) : nullptr;
    return e ? std::string_view(e->source_id) : std::string_view();
  }
  bool IsWatchedPort(uint16_t port) const override { return ports_.count(port) > 0; }

 private:
  const CompiledPolicy* policy_ = nullptr;
  std::set<uint16_t> ports_;
};

inline EveOptions EveOptionsFor(const EveSettings& s) {
  EveOptions o;
  o.host = s.host;
  if (o.host.empty()) {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0) o.host = name;
  }
  o.community_id_seed = s.community_id_seed;
  o.schema = s.suricata7 ? EveSchema::kSuricata7 : EveSchema::kBannerwatch;
  return o;
}

}  // namespace bw
