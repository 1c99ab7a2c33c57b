#include "lib/crowdsec_lapi.hpp"

#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "lib/test_util.hpp"
#include "lib/topology.hpp"

namespace bw::test {

bool CrowdsecLapi::Installed() {
  return Sh("command -v crowdsec >/dev/null && command -v cscli >/dev/null") == 0;
}

CrowdsecLapi::CrowdsecLapi(const Netns& ns, const std::string& dir, int port)
    : ns_(ns), dir_(dir), config_(dir + "/config.yaml"), port_(port) {
  std::filesystem::create_directories(dir_ + "/data");
  // The package's profiles (ban for 4 h on an alert) and hub; everything written is under dir.
  std::filesystem::copy_file("/etc/crowdsec/profiles.yaml", dir_ + "/profiles.yaml",
                             std::filesystem::copy_options::overwrite_existing);
  WriteFile(dir_ + "/simulation.yaml", "simulation: off\n");
  WriteFile(dir_ + "/lapi-credentials.yaml", "");
  WriteFile(config_, absl::StrCat(
      "common: {daemonize: false, log_media: stdout, log_level: info, working_dir: ", dir_, "}\n",
      "config_paths:\n",
      "  config_dir: ", dir_, "/\n",
      "  data_dir: ", dir_, "/data/\n",
      "  simulation_path: ", dir_, "/simulation.yaml\n",
      "  hub_dir: /var/lib/crowdsec/hub/\n",
      "  index_path: /var/lib/crowdsec/hub/.index.json\n",
      "  notification_dir: ", dir_, "/notifications/\n",
      "  plugin_dir: /usr/lib/crowdsec/plugins/\n",
      "cscli: {output: human, color: no}\n",
      "db_config: {log_level: info, type: sqlite, db_path: ", dir_, "/data/crowdsec.db, use_wal: true}\n",
      "api:\n",
      "  client: {credentials_path: ", dir_, "/lapi-credentials.yaml}\n",
      "  server:\n",
      "    log_level: info\n",
      "    listen_uri: 127.0.0.1:", port_, "\n",
      "    profiles_path: ", dir_, "/profiles.yaml\n",
      "    trusted_ips: [127.0.0.1]\n",
      "prometheus: {enabled: false}\n"));
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
