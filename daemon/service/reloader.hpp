// reloader.hpp — the policy in force, and replacing it all or nothing.
//
// A reload reads the policy file and its lists, adds the runtime entries (the state file's) and the
// CrowdSec decisions last received (DecisionSet), compiles, checks the result fits the loaded maps and applies it to them as a diff against what
// this process applied last. Any error on the way leaves the policy in force untouched, in the
// kernel and here (an apply that fails half-way puts the previous policy back). With
// keep_reload_buffers the tables of the policy a reload replaced are kept for the next reload to
// write into (and made ahead on a thread after the start, for the first one).
#pragma once
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "daemon/dataplane/loader.hpp"
#include "daemon/policy/crowdsec_decisions.hpp"
#include "daemon/policy/policy.hpp"
#include "daemon/policy/state.hpp"
#include "maps/maps.hpp"

namespace bw {

class Reloader {
 public:
  // `state_file`: where the runtime entries come from (entries cite it as "STATE_FILE entry N").
  Reloader(std::string config_path, std::string state_file, DataPlane& dp, MapSet& maps);
  ~Reloader();

  // Called after every applied reload with the new compiled policy, before the one it replaced is
  // written over or freed (the event thread moves to it).
  void OnApplied(std::function<void(const CompiledPolicy*)> f) { on_applied_ = std::move(f); }

  // The CrowdSec decisions the lists with `source: crowdsec` take at every reload (owned by the
  // caller; nullptr: none).
  void SetDecisions(const DecisionSet* d) { decisions_ = d; }

  // Builds, compiles and applies the policy with `runtime`'s entries. On error nothing changes;
  // the error is logged with `why` and returned.
  absl::Status Reload(const std::string& why, const RuntimeState& runtime);

  // The last good policy: its settings, lists and files (a list's entries are released after the
  // compile unless keep_reload_buffers; the compiled policy holds every entry). Before the first
  // reload, defaults.
  const Policy& policy() const { return policy_; }
  const CompiledPolicy* compiled() const { return compiled_.get(); }

  struct Record {
    uint64_t ok = 0, failed = 0;
    absl::Time last = absl::InfinitePast();
    bool last_ok = false;
    std::string error;    // of the last reload, if it failed
    std::string summary;  // of the last applied one: the diff and the parse/compile times
  };
  const Record& record() const { return record_; }

  // keep_reload_buffers: the first reload's buffers, made on a thread once the daemon runs
  // (start it after the signals are blocked: the thread must not take the signalfd's signals).
  void StartPremade();
  bool making_buffers() const { return premade_.valid(); }
  // What is held for the next reload to write into (status, metrics).
  uint64_t BufferBytes() const;
  // Takes the buffers made ahead once they are ready (called from the timer).
  void TakePremade();

 private:
  absl::StatusOr<Policy> BuildPolicy(const RuntimeState& runtime);

  const std::string config_path_, state_file_;
  DataPlane& dp_;
  MapSet& maps_;
  std::function<void(const CompiledPolicy*)> on_applied_;
  const DecisionSet* decisions_ = nullptr;
  Policy policy_;        // last good (file part plus runtime lists)
  Policy spare_policy_;  // the one the last reload replaced: the next parse writes into its tables
  std::unique_ptr<CompiledPolicy> compiled_;
  // The compiled policy the last reload replaced, kept for the next compile to write its tables
  // into (their pages stay mapped: page faults are otherwise a third of a million-prefix compile).
  std::unique_ptr<CompiledPolicy> spare_;
  // Until the first reload: the buffers it writes into, made on a thread after the start.
  std::future<ReloadBuffers> premade_;
  bool maps_in_sync_ = false;  // the maps hold exactly compiled_ (this process applied it)
  Record record_;
};

}  // namespace bw
