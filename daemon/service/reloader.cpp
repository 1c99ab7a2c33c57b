#include "daemon/service/reloader.hpp"

#include <malloc.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "daemon/dataplane/apply.hpp"
#include "daemon/dataplane/kernel_probe.hpp"
#include "daemon/policy/feeds.hpp"
#include "daemon/service/log.hpp"

namespace bw {

Reloader::Reloader(std::string config_path, std::string state_file, DataPlane& dp, MapSet& maps)
    : config_path_(std::move(config_path)), state_file_(std::move(state_file)), dp_(dp), maps_(maps) {}

Reloader::~Reloader() {
  if (premade_.valid()) premade_.wait();
}

absl::StatusOr<Policy> Reloader::BuildPolicy(const RuntimeState& runtime) {
  auto p = LoadPolicyFile(config_path_, &spare_policy_);
  if (!p.ok()) return p.status();
  Policy pol = std::move(*p);
  // Runtime entries (CLI block/watch/allow) become entries of lists named by --list; a list of the
  // policy file with the same name and action takes them, otherwise a runtime list is made.
  uint32_t state_file_idx = static_cast<uint32_t>(pol.files.size());
  pol.files.push_back(state_file_);
  pol.numbered_file = state_file_idx;  // `line` below numbers the entries: "state.json entry N"
  PrefixOptions popts{pol.allow_default_route};
  uint32_t line = 0;
  for (const RuntimeEntry& r : runtime.entries()) {
    ++line;
    auto prefix = ParsePrefix(r.cidr, popts);
    if (!prefix.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(state_file_, ": entry ", line, ": ", prefix.status().message()));
    ListAction act = r.action == "block"      ? ListAction::kBlock
                     : r.action == "safelist" ? ListAction::kSafelist
                                              : ListAction::kWatch;
    ListSpec* target = nullptr;
    std::string list = r.list;
    for (ListSpec& l : pol.lists)
      if (l.name == list) target = &l;
    if (target && target->action != act) {
      // The policy now has a list of that name with another action (the control socket refuses
      // to make one, but policies change): the entry keeps its action in its action's runtime
      // list, rather than keep the daemon from starting.
      Log(absl::StrCat(state_file_, ": entry ", line, " (", r.cidr, ", ", r.action, ") names list '",
                       list, "', a ", ListActionName(target->action), " list in the policy: kept in ",
                       "list 'runtime-", r.action, "' instead"),
          LogLevel::kWarning);
      list = "runtime-" + r.action;
      target = nullptr;
      for (ListSpec& l : pol.lists)
        if (l.name == list && l.action == act) target = &l;
    }
    if (!target) {
      ListSpec l;
      l.name = list;
      l.action = act;
      l.reason = r.reason;
      l.tags = {"runtime"};
      pol.lists.push_back(std::move(l));
      target = &pol.lists.back();
    }
    PolicyEntry e;
    e.prefix = *prefix;
    e.file = state_file_idx;
    e.line = line;
    e.source_id = r.reason.empty() ? "" : absl::StrCat("runtime: ", r.reason);
    target->entries.push_back(std::move(e));
  }
  // CrowdSec's decisions, each to the list that takes its type.
  if (decisions_ && pol.crowdsec.on()) {
    uint32_t idx = static_cast<uint32_t>(pol.files.size());
    pol.files.push_back(pol.crowdsec.url);
    pol.decisions_file = idx;
    for (ListSpec& l : pol.lists) {
      if (!l.crowdsec) continue;
      std::vector<DecisionSet::Entry> got = decisions_->Entries(l.crowdsec_types);
      l.entries.reserve(l.entries.size() + got.size());
      for (const DecisionSet::Entry& d : got) {
        if (d.prefix.len == 0 && !pol.allow_default_route) continue;  // as a list file's would be
        l.entries.push_back(PolicyEntry{d.prefix, idx, d.id, d.scenario});
      }
    }
  }
  return pol;
}

void Reloader::StartPremade() {
  if (!policy_.keep_reload_buffers || !compiled_) return;
  // Sizes read here; the thread touches nothing of this daemon's (the feed cache locks itself).
  // Started after the signals are blocked: a thread must not take the signalfd's signals.
  premade_ = std::async(std::launch::async, [sizes = ReloadBufferSizesOf(policy_, *compiled_)] {
    PrepareFeedSpares();
    return MakeReloadBuffers(sizes);
  });
}

void Reloader::TakePremade() {
  if (!premade_.valid() || premade_.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    return;  // not made yet: a reload now goes without them
  ReloadBuffers b = premade_.get();
  if (!policy_.keep_reload_buffers) return;
  if (!spare_) spare_ = std::move(b.compiled);
  if (spare_policy_.lists.empty()) spare_policy_ = std::move(b.policy);
}

uint64_t Reloader::BufferBytes() const {
  return ReusableBytes(spare_policy_) + (spare_ ? ReusableBytes(*spare_) : 0) +
         GetFeedCacheStats().spare_bytes;
}

absl::Status Reloader::Reload(const std::string& why, const RuntimeState& rt) {
  absl::Time t0 = absl::Now();
  TakePremade();
  auto fail = [&](const absl::Status& st) {
    ++record_.failed;
    record_.last = absl::Now();
    record_.last_ok = false;
    record_.error = std::string(st.message());
    Log(absl::StrCat("reload (", why, ") rejected, the last good policy stays in force: ",
                     st.message()),
        LogLevel::kError);
    return st;
  };
  auto pol = BuildPolicy(rt);
  if (!pol.ok()) return fail(pol.status());
  // Ids stay stable across reloads; the tables are written into the storage of the policy the
  // last reload replaced.
  absl::Time t1 = absl::Now();
  auto compiled = Compile(*pol, t0, compiled_.get(), spare_.get());
  absl::Time t2 = absl::Now();
  if (!compiled.ok()) return fail(compiled.status());
  // The maps were sized at load; a policy that outgrew them cannot be applied half-way.
  uint32_t cap4 = dp_.v4_capacity();
  uint32_t cap6 = dp_.v6_capacity();
  if (compiled->v4.size() > cap4 || compiled->v6.size() > cap6)
    return fail(absl::ResourceExhaustedError(absl::StrCat(
        "policy needs ", compiled->v4.size(), " IPv4 / ", compiled->v6.size(),
        " IPv6 prefixes; the loaded maps hold ", cap4, " / ", cap6,
        " (raise limits and restart after `bannerwatch detach`)")));
  ApplyOptions ao;
  // The diff is taken against memory, not by reading the maps back: against what this process
  // applied last, or, for maps this start created (all empty), against nothing.
  static const CompiledPolicy kNothing;
  ao.applied = maps_in_sync_ ? compiled_.get() : nullptr;
  if (!compiled_ && !dp_.adopted()) ao.applied = &kNothing;
  auto stats = ApplyPolicy(*compiled, maps_, ao);
  if (!stats.ok()) {
    // Put the last good policy back so no half-applied state remains (reading the maps: what a
    // failed apply left is not known).
    maps_in_sync_ = false;
    if (compiled_) {
      auto back = ApplyPolicy(*compiled_, maps_);
      if (!back.ok())
        Log(absl::StrCat("restoring the previous policy failed: ", back.status().message()),
            LogLevel::kError);
      maps_in_sync_ = back.ok();
    }
    return fail(stats.status());
  }
  maps_in_sync_ = true;
  spare_policy_ = std::move(policy_);
  policy_ = std::move(*pol);
  spare_ = std::move(compiled_);
  compiled_ = std::make_unique<CompiledPolicy>(std::move(*compiled));
  // The event thread moves to the new policy before the old one is freed or written over.
  if (on_applied_) on_applied_(compiled_.get());
  if (!policy_.keep_reload_buffers) {
    spare_.reset();
    spare_policy_ = Policy();
    premade_ = {};  // waits for the thread if it still runs
    // The compiled policy holds every entry (status, query, events); the policy's own copy of a
    // big list (40 bytes an entry) is only read again by a reload writing into it.
    for (ListSpec& l : policy_.lists) std::vector<PolicyEntry>().swap(l.entries);
  }
  KeepFeedSpares(policy_.keep_reload_buffers);
  ++record_.ok;
  record_.last = absl::Now();
  record_.last_ok = true;
  record_.error.clear();
  record_.summary = absl::StrCat(stats->ToString(), "; parse ", absl::FormatDuration(t1 - t0),
                                      ", compile ", absl::FormatDuration(t2 - t1));
  Log(absl::StrCat("policy ", config_path_, " applied (", why, "): ", record_.summary));
  if (!compiled_->proxy_ports.empty() && !(dp_.features() & BW_FEAT_CONNECT))
    Log(absl::StrCat("proxy_ports are set, but this kernel's data plane does not follow CONNECT "
                     "tunnels (", DescribeDataPlane(dp_.variant(), dp_.kernel()), ")"),
        LogLevel::kWarning);
  // What the replaced policy and this reload's temporaries freed inside the allocator's arenas
  // (small tables, a thread's arena) goes back to the kernel now, not at some later allocation.
  ::malloc_trim(0);
  return absl::OkStatus();
}

}  // namespace bw
