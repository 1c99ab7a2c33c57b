#include "lib/crowdsec_lapi.hpp"

#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "lib/crowdsec_files.hpp"
#include "lib/test_util.hpp"
#include "lib/topology.hpp"

namespace bw::test {

bool CrowdsecLapi::Installed() {
  return Sh("command -v crowdsec >/dev/null && command -v cscli >/dev/null") == 0;
}

CrowdsecLapi::CrowdsecLapi(const Netns& ns, const std::string& dir, int port)
    : ns_(ns), dir_(dir), config_(dir + "/config.yaml"), port_(port) {
  absl::Status files = WriteCrowdsecLapiFiles(dir_, port_);
  INFO(files);
  REQUIRE(files.ok());
  // cscli's own machine account (it adds and deletes decisions through the API).
  Cscli("machines add bwtest --auto --force");
  Start();
}

CrowdsecLapi::~CrowdsecLapi() {
  if (proc_) Stop();
}

std::string CrowdsecLapi::url() const { return absl::StrCat("http://127.0.0.1:", port_, "/"); }

std::string CrowdsecLapi::Cscli(const std::string& args) {
  int st = 0;
  std::string out = ns_.Out(absl::StrCat("cscli -c ", config_, " ", args, " 2>&1"), &st);
  INFO("cscli " << args << ":\n" << out);
  REQUIRE(st == 0);
  return out;
}

std::string CrowdsecLapi::AddBouncer(const std::string& name) {
  // A key of our own choosing (cscli accepts -k), so no output needs parsing.
  std::string key = absl::StrCat("bwtest", name, getpid());
  Cscli(absl::StrCat("bouncers add ", name, " -k ", key));
  last_key_file_ = absl::StrCat(dir_, "/", name, ".key");
  WriteFile(last_key_file_, key + "\n");
  return key;
}

const std::string& CrowdsecLapi::key_file(const std::string&) const { return last_key_file_; }

void CrowdsecLapi::Start() {
  proc_ = std::make_unique<Process>(&ns_, std::vector<std::string>{"crowdsec", "-c", config_, "-no-cs"},
                                    dir_ + "/crowdsec.log");
  bool up = WaitListening(const_cast<Netns&>(ns_), port_, 15000);
  INFO("crowdsec log:\n" << ReadFile(dir_ + "/crowdsec.log"));
  REQUIRE(up);
}

void CrowdsecLapi::Stop() {
  proc_->Signal(SIGTERM);
  if (proc_->Wait(10000) < 0) proc_->Signal(SIGKILL);
  proc_.reset();
}

}  // namespace bw::test
