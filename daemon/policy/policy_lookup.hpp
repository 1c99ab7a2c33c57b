// policy_lookup.hpp — EVE metadata (list names, tags, reasons, source ids, watched ports) from a
// compiled policy, shared by the daemon and the offline scanner.
//
// Contract: answers from the CompiledPolicy last given to set_policy() (not owned; null: unknown
// everything). Interface names are the subclass's business (live ifindex vs a capture's name).
#pragma once

#include <cstdint>
#include <set>
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

}  // namespace bw
