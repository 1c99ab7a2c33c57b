#include "lib/topology.hpp"

#include <sys/stat.h>

#include <cerrno>

#include "daemon/host/host_programs.hpp"

#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

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
  if (std::string root = Cgroup2Mount(); !root.empty()) {
    cgroup_ = root + "/bwt-" + std::to_string(getpid());
    ::rmdir(cgroup_.c_str());
    if (::mkdir(cgroup_.c_str(), 0755) != 0) cgroup_.clear();
  }
}

std::string Topology::InCgroup(const std::string& cmd) const {
  if (cgroup_.empty()) return cmd;
  return "sh -c 'echo $$ > " + cgroup_ + "/cgroup.procs && exec \"$0\" \"$@\"' " + cmd;
}

Topology::~Topology() {
  // The test cgroup goes once its processes have: any a test left behind are killed.
  for (int i = 0; !cgroup_.empty() && i < 100; ++i) {
    if (::rmdir(cgroup_.c_str()) == 0 || errno == ENOENT) break;
    std::ifstream procs(cgroup_ + "/cgroup.procs");
    for (pid_t pid; procs >> pid;) ::kill(pid, SIGKILL);
    ::usleep(20000);
  }
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

int SshProbe(Topology& t, const std::string& addr, int port, int timeout_s, std::string* out,
             const std::string& extra) {
  timeout_s *= TimeScale();
  std::string cmd = t.host().Prefix() + " timeout " + std::to_string(timeout_s + 2) +
                    " ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                    " -o ConnectTimeout=" + std::to_string(timeout_s) + " " + extra + " -p " +
                    std::to_string(port) + " nobody@" + addr + " true 2>&1";
  int st = 0;
  std::string o = ShOut(cmd, &st);
  if (out) *out = o;
  return st;
}

bool WaitListening(Netns& ns, int port, int timeout_ms) {
  return WaitFor(
      [&] { return ns.Run("ss -ltnH | grep -q \":" + std::to_string(port) + " \"") == 0; },
      timeout_ms);
}

namespace {
// <dir>/<name>-<port>, created.
std::string ServerDir(Topology& t, const std::string& name, int port) {
  std::string d = t.dir() + "/" + name + "-" + std::to_string(port);
  std::filesystem::create_directories(d);
  return d;
}

void RequireListening(Topology& t, int port, const std::string& log) {
  bool up = WaitListening(t.server(), port);
  INFO(log << ":\n" << ReadFile(log));
  REQUIRE(up);
}
}  // namespace

TlsFiles SelfSignedCert(Topology& t) {
  TlsFiles f{t.dir() + "/tls-cert.pem", t.dir() + "/tls-key.pem"};
  if (!std::filesystem::exists(f.cert))
    REQUIRE(Sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
               " -subj /CN=server.test -keyout " + f.key + " -out " + f.cert + " >/dev/null 2>&1") == 0);
  return f;
}

std::unique_ptr<Process> StartDropbear(Topology& t, int port) {
  std::string d = ServerDir(t, "dropbear", port);
  if (!std::filesystem::exists(d + "/hostkey"))
    REQUIRE(Sh("dropbearkey -t ed25519 -f " + d + "/hostkey >/dev/null 2>&1") == 0);
  auto p = std::make_unique<Process>(
      &t.server(),
      std::vector<std::string>{"/usr/sbin/dropbear", "-F", "-E", "-p",
                               std::string(kServerV4) + ":" + std::to_string(port), "-r",
                               d + "/hostkey", "-P", d + "/dropbear.pid"},
      d + "/dropbear.log");
  RequireListening(t, port, d + "/dropbear.log");
  return p;
}

std::unique_ptr<Process> StartNginx(Topology& t, const std::vector<NginxListen>& listens) {
  REQUIRE(!listens.empty());
  std::string d = ServerDir(t, "nginx", listens[0].port);
  std::filesystem::create_directories(d + "/tmp");
  TlsFiles tls = SelfSignedCert(t);
  std::string conf = "daemon off;\nmaster_process on;\nworker_processes 1;\npid " + d +
                     "/nginx.pid;\nerror_log " + d + "/error.log;\nevents { worker_connections 64; }\n"
                     "http {\n  access_log " + d + "/access.log;\n";
  for (const char* tmp : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
    conf += std::string("  ") + tmp + "_temp_path " + d + "/tmp;\n";
  for (const NginxListen& l : listens) {
    conf += "  server {\n    listen " + l.addr + ":" + std::to_string(l.port) + (l.tls ? " ssl" : "") +
            ";\n";
    if (l.tls)
      conf += "    ssl_certificate " + tls.cert + ";\n    ssl_certificate_key " + tls.key + ";\n";
    conf += "    location / { return 200 \"bannerwatch test page\\n\"; }\n  }\n";
  }
  conf += "}\n";
  WriteFile(d + "/nginx.conf", conf);
  auto p = std::make_unique<Process>(
      &t.server(), std::vector<std::string>{"/usr/sbin/nginx", "-c", d + "/nginx.conf", "-p", d},
      d + "/nginx.log");
  for (const NginxListen& l : listens) RequireListening(t, l.port, d + "/error.log");
  return p;
}

std::unique_ptr<Process> StartSslh(Topology& t, int port, int ssh_port, int tls_port) {
  std::string d = ServerDir(t, "sslh", port);
  std::string v4 = kServerV4;
  auto p = std::make_unique<Process>(
      &t.server(),
      std::vector<std::string>{"/usr/sbin/sslh", "-f", "-n", "-p", v4 + ":" + std::to_string(port),
                               "--ssh", v4 + ":" + std::to_string(ssh_port), "--tls",
                               v4 + ":" + std::to_string(tls_port)},
      d + "/sslh.log");
  RequireListening(t, port, d + "/sslh.log");
  return p;
}

std::unique_ptr<Process> StartStunnel(Topology& t, int port, int connect_port) {
  std::string d = ServerDir(t, "stunnel", port);
  TlsFiles tls = SelfSignedCert(t);
  WriteFile(d + "/stunnel.conf", "foreground = yes\npid = " + d + "/stunnel.pid\n[ssh-in-tls]\naccept = " +
                                     kServerV4 + ":" + std::to_string(port) + "\nconnect = " +
                                     kServerV4 + ":" + std::to_string(connect_port) + "\ncert = " +
                                     tls.cert + "\nkey = " + tls.key + "\n");
  auto p = std::make_unique<Process>(
      &t.server(), std::vector<std::string>{"/usr/bin/stunnel4", d + "/stunnel.conf"},
      d + "/stunnel.log");
  RequireListening(t, port, d + "/stunnel.log");
  return p;
}

std::unique_ptr<Process> StartTinyproxy(Topology& t, int port) {
  std::string d = ServerDir(t, "tinyproxy", port);
  WriteFile(d + "/tinyproxy.conf", "Port " + std::to_string(port) + "\nListen " + kServerV4 +
                                       "\nTimeout 30\nMaxClients 16\nAllow 198.51.100.0/24\n"
                                       "ConnectPort 443\nLogLevel Info\n");
  auto p = std::make_unique<Process>(
      &t.server(), std::vector<std::string>{"/usr/bin/tinyproxy", "-d", "-c", d + "/tinyproxy.conf"},
      d + "/tinyproxy.log");
  RequireListening(t, port, d + "/tinyproxy.log");
  return p;
}

int Curl(Topology& t, const std::string& url, int timeout_s, std::string* body) {
  int st = 0;
  timeout_s *= TimeScale();
  std::string out = ShOut(t.host().Prefix() + " curl -sS -k --connect-timeout " +
                              std::to_string(timeout_s) + " --max-time " +
                              std::to_string(timeout_s + 1) + " '" + url + "' 2>&1",
                          &st);
  if (body) *body = out;
  return st;
}

Tcpdump::Tcpdump(Netns& ns, const std::string& iface, const std::string& path)
    : path_(path), log_(path + ".log") {
  // --immediate-mode: without it, frames still in the capture ring's current block when SIGINT
  // arrives are never written. -Z root: write the file as root (no privilege drop).
  proc_ = std::make_unique<Process>(
      &ns,
      std::vector<std::string>{"tcpdump", "-i", iface, "-w", path, "--immediate-mode", "-U", "-n",
                               "-s", "0", "-Z", "root"},
      log_);
  bool up = WaitFor([&] { return ReadFile(log_).find("listening on") != std::string::npos; }, 5000);
  INFO("tcpdump: " << ReadFile(log_));
  REQUIRE(up);
}

std::string Tcpdump::Stop() {
  if (proc_) {
    proc_->Signal(SIGINT);
    int st = proc_->Wait(5000);
    proc_.reset();
    INFO("tcpdump: " << ReadFile(log_));
    CHECK(st == 0);
  }
  return ReadFile(log_);
}

Tcpdump::~Tcpdump() {
  if (proc_) {
    proc_->Signal(SIGINT);
    proc_->Wait(5000);
  }
}

ScanRun ScanCapture(const std::string& policy, const std::string& capture,
                    const std::vector<std::string>& locals) {
  ScanRun r;
  std::string cmd = BannerwatchBinary() + " scan --config " + policy;
  for (const std::string& l : locals) cmd += " --local " + l;
  std::string err = capture + ".scan-stderr";
  std::string out = ShOut(cmd + " " + capture + " 2>" + err, &r.status);
  r.summary = ReadFile(err);
  std::filesystem::remove(err);
  std::istringstream ss(out);
  std::string line;
  while (std::getline(ss, line))
    if (!line.empty()) r.eve.push_back(nlohmann::json::parse(line));
  return r;
}

Daemon::Daemon(Topology& t, const std::string& policy_yaml, const std::vector<std::string>& extra)
    : t_(t), extra_(extra) {
  policy_ = t.dir() + "/policy.yaml";
  eve_ = t.dir() + "/eve.json";
  sock_ = t.dir() + "/control.sock";
  state_ = t.dir() + "/state.json";
  pin_root_ = "/sys/fs/bpf/bwt-" + std::to_string(getpid());
  log_ = t.dir() + "/daemon.log";
  // A control socket, EVE file or state file named in `extra` replaces the default one (the CLI
  // refuses an option twice).
  for (auto [opt, path] : {std::pair<const char*, std::string*>{"--control", &sock_},
                           {"--eve", &eve_},
                           {"--state", &state_}}) {
    for (size_t i = 0; i + 1 < extra_.size(); ++i) {
      if (extra_[i] == opt) {
        *path = extra_[i + 1];
        extra_.erase(extra_.begin() + static_cast<long>(i),
                     extra_.begin() + static_cast<long>(i) + 2);
        break;
      }
    }
  }
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
  if (!t_.cgroup().empty() &&
      std::find(extra_.begin(), extra_.end(), "--cgroup") == extra_.end()) {
    argv.push_back("--cgroup");
    argv.push_back(t_.cgroup());
  }
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
