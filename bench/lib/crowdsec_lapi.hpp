// crowdsec_lapi.hpp — a private CrowdSec Local API (`crowdsec -no-cs`: the API alone, no agent)
// for a benchmark, offline.
//
// Contract: Start() writes a configuration of its own under `dir` (tests/lib/crowdsec_files.hpp,
// shared with the tests: database, data, profiles, simulation off, no online API, no
// prometheus, logs to stdout), registers cscli's machine
// (`cscli machines add -a`) and one bouncer per name with a key it makes, then starts the API
// inside network namespace `netns`, listening on 127.0.0.1:port there, and waits until it
// accepts connections. Cscli() runs `cscli -c CONFIG ARGS` inside the same namespace (cscli talks
// to the API as that machine). The destructor stops the API; `dir` is the caller's to remove.
// Debian 12's crowdsec 1.4.6 and its cscli are what this was written against.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/lib/child_proc.hpp"

namespace bw::bench {

struct LapiOptions {
  std::string dir;    // private directory, existing
  std::string netns;  // the namespace it listens in
  uint16_t port = 18080;
  std::string crowdsec = "/usr/bin/crowdsec";
  std::string cscli = "/usr/bin/cscli";
  std::vector<std::string> bouncers;  // names to register
  double ready_timeout_s = 60;
};

class CrowdsecLapi {
 public:
  static absl::StatusOr<std::unique_ptr<CrowdsecLapi>> Start(const LapiOptions& o);
  ~CrowdsecLapi() = default;

  std::string url() const;                            // "http://127.0.0.1:PORT/"
  std::string key(const std::string& bouncer) const;  // the key made for it ("" if unknown)
  const std::string& config() const { return config_; }
  // `cscli -c CONFIG args` inside the namespace; stdout and stderr, or an error that quotes them.
  absl::StatusOr<std::string> Cscli(const std::string& args) const;
  ChildProc& proc() { return *proc_; }
  double ready_seconds() const { return ready_s_; }  // start to accepting connections

 private:
  CrowdsecLapi() = default;
  LapiOptions o_;
  std::string config_;
  std::map<std::string, std::string> keys_;
  std::unique_ptr<ChildProc> proc_;
  double ready_s_ = 0;
};

}  // namespace bw::bench
