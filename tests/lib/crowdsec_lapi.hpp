// crowdsec_lapi.hpp — a real CrowdSec Local API for the tests: Debian's crowdsec with only its
// API running (-no-cs: no log acquisition, no Central API), in a namespace the test names, on
// 127.0.0.1:`port` there, with every file of its own under `dir` (configuration, SQLite database,
// cscli's machine credentials). cscli runs against the same configuration, in the same namespace.
//
// Contract: the constructor returns once the API listens (the test fails with crowdsec's log
// otherwise); Stop() and Start() take it away and bring it back with its database; the destructor
// stops it. Nothing outside `dir` is written.
#pragma once

#include <memory>
#include <string>

#include "lib/netns.hpp"

namespace bw::test {

class CrowdsecLapi {
 public:
  CrowdsecLapi(const Netns& ns, const std::string& dir, int port = 18080);
  ~CrowdsecLapi();
  CrowdsecLapi(const CrowdsecLapi&) = delete;
  CrowdsecLapi& operator=(const CrowdsecLapi&) = delete;

  // Whether Debian's crowdsec and cscli are installed (scripts/install-deps installs them).
  static bool Installed();

  std::string url() const;  // "http://127.0.0.1:PORT/"
  // `cscli bouncers add NAME -k KEY`; returns the key (also written to <dir>/NAME.key).
  std::string AddBouncer(const std::string& name);
  const std::string& key_file(const std::string& name) const;
  // Runs `cscli -c CONFIG ARGS` in the namespace; fails the test (with cscli's output) unless it
  // exits 0. Returns its output.
  std::string Cscli(const std::string& args);
  void Stop();
  void Start();
  bool running() const { return proc_ != nullptr; }

 private:
  const Netns& ns_;
  std::string dir_, config_;
  int port_;
  std::string last_key_file_;
  std::unique_ptr<Process> proc_;
};

}  // namespace bw::test
