#include "lib/topology.hpp"

#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace bw::test {

std::string BannerwatchBinary() {
#ifdef BW_BUILD_DIR
  return std::string(BW_BUILD_DIR) + "/bannerwatch";
#else
  return "bannerwatch";
#endif
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

Topology::Topology() {
  dir_ = "/tmp/bwt-" + std::to_string(getpid());
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  host_ = std::make_unique<Netns>("host");
  server_ = std::make_unique<Netns>("srv");
  veth_ = std::make_unique<Veth>(VethEnd{host_.get(), kHostIf, std::string(kHostV4) + "/24",
                                         std::string(kHostV6) + "/64"},
                                 VethEnd{server_.get(), kServerIf, std::string(kServerV4) + "/24",
                                         std::string(kServerV6) + "/64"});
}

Topology::~Topology() {
  veth_.reset();
  server_.reset();
  host_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::unique_ptr<Process> StartSshd(Topology& t, int port) {
  std::string d = t.dir() + "/sshd-" + std::to_string(port);
  std::filesystem::create_directories(d);
  std::filesystem::create_directories("/run/sshd");  // privilege separation directory
  if (!std::filesystem::exists(d + "/hostkey"))
    REQUIRE(Sh("ssh-keygen -q -t ed25519 -N '' -f " + d + "/hostkey") == 0);
  WriteFile(d + "/sshd_config", "Port " + std::to_string(port) + "\nListenAddress " + kServerV4 +
                                    "\nListenAddress " + kServerV6 + "\nHostKey " + d +
                                    "/hostkey\nPidFile " + d + "/sshd.pid\nUsePAM no\n");
  auto p = std::make_unique<Process>(&t.server(),
                                     std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f",
                                                              d + "/sshd_config"},
                                     d + "/sshd.log");
  bool up = WaitFor(
      [&] {
        return t.server().Run("ss -ltn | grep -q \":" + std::to_string(port) + " \"") == 0;
      },
      5000);
  INFO(ReadFile(d + "/sshd.log"));
  REQUIRE(up);
  return p;
}

int SshProbe(Topology& t, const std::string& addr, int port, int timeout_s, std::string* out) {
  std::string cmd = t.host().Prefix() + " timeout " + std::to_string(timeout_s + 2) +
                    " ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                    " -o ConnectTimeout=" + std::to_string(timeout_s) + " -p " +
                    std::to_string(port) + " nobody@" + addr + " true 2>&1";
  int st = 0;
  std::string o = ShOut(cmd, &st);
  if (out) *out = o;
  return st;
}

Daemon::Daemon(Topology& t, const std::string& policy_yaml, const std::vector<std::string>& extra)
    : t_(t), extra_(extra) {
  policy_ = t.dir() + "/policy.yaml";
  eve_ = t.dir() + "/eve.json";
  sock_ = t.dir() + "/control.sock";
  state_ = t.dir() + "/state.json";
  pin_root_ = "/sys/fs/bpf/bwt-" + std::to_string(getpid());
  log_ = t.dir() + "/daemon.log";
  WritePolicy(policy_yaml);
}

void Daemon::WritePolicy(const std::string& yaml) {
  // Write then rename, as a careful operator (or config management) would.
  WriteFile(policy_ + ".tmp", yaml);
  std::filesystem::rename(policy_ + ".tmp", policy_);
}

void Daemon::Start() {
  std::vector<std::string> argv = {BannerwatchBinary(), "run",      "--config", policy_,
                                   "--iface",           kHostIf,    "--pin-root", pin_root_,
                                   "--eve",             eve_,       "--control", sock_,
                                   "--state",           state_};
  if (std::find(extra_.begin(), extra_.end(), "--metrics") == extra_.end()) {
    argv.push_back("--metrics");
    argv.push_back("off");
  }
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  proc_ = std::make_unique<Process>(&t_.host(), argv, log_);
  bool up = WaitFor(
      [&] { return !proc_->Running() || Cli("status --json") == 0; }, 15000);
  INFO("daemon log:\n" << log());
  REQUIRE(up);
  REQUIRE(proc_->Running());
}

void Daemon::Kill9() {
  if (proc_) proc_->Signal(SIGKILL);
}

int Daemon::Stop() {
  if (!proc_) return -1;
  proc_->Signal(SIGTERM);
  int st = proc_->Wait(10000);
  proc_.reset();
  return st;
}

bool Daemon::running() { return proc_ && proc_->Running(); }

Daemon::~Daemon() {
  if (proc_ && proc_->Running()) Stop();
  // Whatever a killed daemon or a failed test left: the same clean-up an operator would run.
  Sh(t_.host().Prefix() + " " + BannerwatchBinary() + " detach --pin-root " + pin_root_ +
     " >/dev/null 2>&1");
  std::error_code ec;
  std::filesystem::remove_all(pin_root_, ec);
}

int Daemon::Cli(const std::string& args, std::string* out) {
  int st = 0;
  std::string o = ShOut(BannerwatchBinary() + " " + args + " --control " + sock_ + " 2>&1", &st);
  if (out) *out = o;
  return st;
}

nlohmann::json Daemon::Status() {
  std::string out;
  REQUIRE(Cli("status --json", &out) == 0);
  return nlohmann::json::parse(out);
}

std::vector<nlohmann::json> Daemon::EveLines() {
  std::vector<nlohmann::json> v;
  std::istringstream ss(ReadFile(eve_));
  std::string line;
  while (std::getline(ss, line))
    if (!line.empty()) v.push_back(nlohmann::json::parse(line));
  return v;
}

std::string Daemon::log() { return ReadFile(log_); }

}  // namespace bw::test
