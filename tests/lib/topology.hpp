// topology.hpp — the integration tests' little network: a protected host and a server, each in its
// own namespace, joined by a veth pair, plus helpers to run real servers and the daemon there.
//
//   [host ns] bwh0  198.51.100.1/24 2001:db8:100::1/64  <-veth->  bws0 198.51.100.2/24 2001:db8:100::2/64 [server ns]
//
// Contract: everything (namespaces, veth, processes, pins, temporary files) is removed when the
// objects are destroyed, also when a test fails. The daemon runs in the host namespace with a
// private pin root, EVE file, control socket and state file under the test's work directory.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/netns.hpp"

namespace bw::test {

inline constexpr const char* kHostV4 = "198.51.100.1";
inline constexpr const char* kServerV4 = "198.51.100.2";
inline constexpr const char* kHostV6 = "2001:db8:100::1";
inline constexpr const char* kServerV6 = "2001:db8:100::2";
inline constexpr const char* kHostIf = "bwh0";
inline constexpr const char* kServerIf = "bws0";

// The built binary.
std::string BannerwatchBinary();

class Topology {
 public:
  Topology();
  ~Topology();
  Netns& host() { return *host_; }
  Netns& server() { return *server_; }
  const std::string& dir() const { return dir_; }  // the test's work directory
  // A cgroup v2 directory of the test's own (the daemon's --cgroup: its refusal and, on kernels
  // without tracing hooks, attribution programs attach there, so the host's other processes and
  // the other tests are untouched). A command is put in it with InCgroup.
  const std::string& cgroup() const { return cgroup_; }
  // `cmd` as a shell command that first moves itself into cgroup().
  std::string InCgroup(const std::string& cmd) const;

 private:
  std::string dir_, cgroup_;
  std::unique_ptr<Netns> host_, server_;
  std::unique_ptr<Veth> veth_;
};

// OpenSSH's sshd listening on `port` in the server namespace (its own host key and config).
std::unique_ptr<Process> StartSshd(Topology& t, int port);
// A client connection attempt from the host namespace; returns ssh's exit status (255 when the
// banners were exchanged but authentication failed, as expected; 255 too when no connection).
// `out` gets ssh's stderr. `extra` is added to ssh's options (e.g. "-o ProxyCommand='...'").
int SshProbe(Topology& t, const std::string& addr, int port, int timeout_s, std::string* out,
             const std::string& extra = "");

// ---- more real servers and tools (tests/integration/traffic_test.cpp) ----------------------------
// Every server below runs in the server namespace with its files under <dir>/<name>-<port>, and
// the Start* functions return once it listens (they fail the test otherwise, with its log).

// Polls `ss` in `ns` until something listens on TCP `port`.
bool WaitListening(Netns& ns, int port, int timeout_ms = 5000);
// A self-signed certificate (EC P-256, CN server.test) made with openssl, once per topology.
struct TlsFiles {
  std::string cert, key;
};
TlsFiles SelfSignedCert(Topology& t);
// dropbear on kServerV4:`port` with its own ed25519 host key.
std::unique_ptr<Process> StartDropbear(Topology& t, int port);
// nginx with one server per listener, each answering every request with kTestPage.
inline constexpr const char* kTestPage = "bannerwatch test page\n";
struct NginxListen {
  std::string addr;  // IPv4 address (IPv6 in brackets)
  int port;
  bool tls;
};
std::unique_ptr<Process> StartNginx(Topology& t, const std::vector<NginxListen>& listens);
// sslh on kServerV4:`port`: SSH to kServerV4:ssh_port, TLS to kServerV4:tls_port.
std::unique_ptr<Process> StartSslh(Topology& t, int port, int ssh_port, int tls_port);
// stunnel (server mode) on kServerV4:`port`, the TLS inside going to kServerV4:connect_port.
std::unique_ptr<Process> StartStunnel(Topology& t, int port, int connect_port);
// tinyproxy on kServerV4:`port`, CONNECT allowed to 443 from the host's subnet.
std::unique_ptr<Process> StartTinyproxy(Topology& t, int port);
// curl from the host namespace; returns curl's exit status, `body` gets its output.
int Curl(Topology& t, const std::string& url, int timeout_s, std::string* body = nullptr);

// tcpdump writing every frame of `iface` in `ns` to `path` (pcap). Returns once it listens;
// Stop() (and the destructor) sends SIGINT and waits for it to flush and exit.
class Tcpdump {
 public:
  Tcpdump(Netns& ns, const std::string& iface, const std::string& path);
  ~Tcpdump();
  // Returns tcpdump's own report ("N packets captured ...").
  std::string Stop();
  const std::string& path() const { return path_; }

 private:
  std::string path_, log_;
  std::unique_ptr<Process> proc_;
};

// `bannerwatch scan --config POLICY [--local L]... CAPTURE`, run as the tests' root.
struct ScanRun {
  int status = -1;
  std::vector<nlohmann::json> eve;  // stdout, parsed
  std::string summary;              // stderr
};
ScanRun ScanCapture(const std::string& policy, const std::string& capture,
                    const std::vector<std::string>& locals);

class Daemon {
 public:
  // Writes `policy_yaml` to <dir>/policy.yaml (list files may be written beside it first).
  // `--control`, `--eve` or `--state` in `extra` replace the default path of that file.
  Daemon(Topology& t, const std::string& policy_yaml, const std::vector<std::string>& extra = {});
  ~Daemon();
  void Start();   // returns once the control socket answers
  void Kill9();   // SIGKILL, pins and attachments stay
  int Stop();     // SIGTERM, waits; returns the exit status
  bool running();
  // Runs `bannerwatch ARGS --control <sock>` (client commands); returns exit status.
  int Cli(const std::string& args, std::string* out = nullptr);
  nlohmann::json Status();
  std::vector<nlohmann::json> EveLines();  // every line of the EVE file, parsed
  const std::string& eve_path() const { return eve_; }
  std::string log();
  const std::string& pin_root() const { return pin_root_; }
  const std::string& policy_path() const { return policy_; }
  const std::string& state_path() const { return state_; }
  const std::string& control_path() const { return sock_; }
  void WritePolicy(const std::string& yaml);

 private:
  Topology& t_;
  std::string policy_, eve_, sock_, state_, pin_root_, log_;
  std::vector<std::string> extra_;
  std::unique_ptr<Process> proc_;
};

// Reads a whole file ("" if missing).
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

}  // namespace bw::test
