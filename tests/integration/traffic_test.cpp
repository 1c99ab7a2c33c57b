// Real traffic: real servers and clients from apt, the daemon live on the protected host's veth,
// every case captured with tcpdump and replayed offline with `bannerwatch scan`.
//
// Test that: SSH on 443 alerts whoever serves it (OpenSSH, dropbear, OpenSSH behind sslh), and with
// `banner.server: drop` the SSH session cannot be established while HTTPS on the very same address
// and port (sslh) still works; TLS and plain HTTP on 443 raise no banner alert, nor a non-TLS one;
// SSH wrapped in TLS (stunnel) raises none either (the documented limit); SSH through an HTTP
// CONNECT proxy (tinyproxy) alerts, the kernel following the tunnel on a proxy port; the
// protected host cannot reach a blocked subnet but reaches others, and in watch mode connects
// with a 1000149 alert. In every case the live EVE file and the scan of the capture report the
// same flows (signature_id, src_ip, src_port, dest_ip, dest_port), within what a capture on the
// host's veth can show: frames the data plane dropped never reach tcpdump there (XDP runs before
// the receive tap, TC egress before the transmit tap), so alerts for dropped frames ("blocked")
// are live only; the banner-drop case also captures on the server's side of the veth, where the
// dropped server frames are visible, and there the scan reports exactly the live flows.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/time/time.h"
#include "lib/netns.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

using json = nlohmann::json;

const std::vector<std::string> kLocals = {"198.51.100.1/32", "2001:db8:100::1/128"};
constexpr const char* kServerV4b = "198.51.100.3";  // a second address of the server
constexpr const char* kFarServer = "203.0.113.10";  // behind the server, in the "blocked" subnet

const char* kAlertPolicy = R"(ports: [443]
banner: {server: alert, client: alert}
lists: []
)";

// Banner alerts plus the non-TLS check: TLS and HTTP on 443 must stay silent under both.
const char* kQuietPolicy = R"(ports: [443]
banner: {server: alert, client: alert, non_tls: alert}
lists: []
)";

const char* kProxyPolicy = R"(ports: [443]
proxy_ports: [8888]
banner: {server: alert, client: alert}
lists: []
)";

const char* kDropPolicy = R"(ports: [443]
banner: {server: drop, client: alert}
lists: []
)";

const char* kOutboundBlockPolicy = R"(ports: [443]
banner: {server: alert, client: alert}
lists:
  - name: outbound-block
    action: block
    reason: "integration test: blocked subnet"
    entries: [203.0.113.0/24]
)";

const char* kOutboundWatchPolicy = R"(ports: [443]
banner: {server: alert, client: alert}
lists:
  - name: outbound-watch
    action: watch
    reason: "integration test: watched subnet"
    entries: [203.0.113.0/24]
)";

// (signature_id, src_ip, src_port, dest_ip, dest_port)
using FlowKey = std::tuple<int, std::string, int, std::string, int>;

FlowKey Key(const json& j) {
  return {j["alert"]["signature_id"].get<int>(), j["src_ip"].get<std::string>(),
          j.value("src_port", 0), j["dest_ip"].get<std::string>(), j.value("dest_port", 0)};
}

std::string Show(const std::set<FlowKey>& s) {
  std::string out = "{";
  for (const auto& [sid, src, sp, dst, dp] : s)
    out += " " + std::to_string(sid) + " " + src + ":" + std::to_string(sp) + ">" + dst + ":" +
           std::to_string(dp) + ";";
  return out + " }";
}

// Alerts of one action ("allowed" / "blocked"); empty action: all.
std::set<FlowKey> Flows(const std::vector<json>& eve, const std::string& action = "") {
  std::set<FlowKey> s;
  for (const json& j : eve)
    if (action.empty() || j["alert"]["action"] == action) s.insert(Key(j));
  return s;
}

std::set<FlowKey> WithSid(const std::vector<json>& eve, int sid) {
  std::set<FlowKey> s;
  for (const json& j : eve)
    if (j["alert"]["signature_id"] == sid) s.insert(Key(j));
  return s;
}

absl::Time EveTime(const json& j) {
  absl::Time t;
  std::string err;
  REQUIRE(absl::ParseTime("%Y-%m-%dT%H:%M:%E*S%z", j["timestamp"].get<std::string>(), &t, &err));
  return t;
}

// Lets the daemon's EVE buffer (flushed within ~100 ms) reach the file before it is read.

// With BW_TRAFFIC_REPORT set, prints what a case saw (live alerts, the scan's, its summary).
void Report(const char* capture, const std::vector<json>& live, const ScanRun& scan) {
  if (!std::getenv("BW_TRAFFIC_REPORT")) return;
  auto show = [](const std::vector<json>& eve) {
    std::string o;
    for (const json& j : eve)
      o += "    " + std::to_string(j["alert"]["signature_id"].get<int>()) + " " +
           j["alert"]["action"].get<std::string>() + " " + j["src_ip"].get<std::string>() + ":" +
           std::to_string(j.value("src_port", 0)) + " > " + j["dest_ip"].get<std::string>() + ":" +
           std::to_string(j.value("dest_port", 0)) + " " +
           j["bannerwatch"]["direction"].get<std::string>() + "\n";
    return o;
  };
  std::fprintf(stderr, "== %s (%s)\n  live (%zu):\n%s  scan (%zu):\n%s  scan summary:\n%s",
               Catch::getResultCapture().getCurrentTestName().c_str(), capture, live.size(),
               show(live).c_str(), scan.eve.size(), show(scan.eve).c_str(), scan.summary.c_str());
}

// The live alerts against the scan of a capture taken on the host's veth: alerts the data plane
// passed ("allowed") are the same flows both ways, with capture times within a second of the
// kernel's and otherwise the same line; a dropped frame is not in such a capture, so the scan's
// "blocked" alerts are a subset of the live ones (empty, unless dropped and passed frames share a
// 5-tuple).
void CheckLiveMatchesScan(const std::vector<json>& live, const ScanRun& scan) {
  INFO("scan summary:\n" << scan.summary);
  Report("host-side capture", live, scan);
  REQUIRE(scan.status == 0);
  CHECK(scan.summary.find("frames: 0 ") == std::string::npos);  // the capture has the traffic
  std::set<FlowKey> live_ok = Flows(live, "allowed"), scan_ok = Flows(scan.eve, "allowed");
  INFO("live allowed " << Show(live_ok) << "\nscan allowed " << Show(scan_ok));
  CHECK(live_ok == scan_ok);
  std::set<FlowKey> live_blocked = Flows(live, "blocked"), scan_blocked = Flows(scan.eve, "blocked");
  INFO("live blocked " << Show(live_blocked) << "\nscan blocked " << Show(scan_blocked));
  for (const FlowKey& k : scan_blocked) CHECK(live_blocked.count(k) == 1);
  for (const json& s : scan.eve)
    for (const json& l : live)
      if (Key(s) == Key(l) && s["alert"]["action"] == l["alert"]["action"]) {
        CHECK(absl::AbsDuration(EveTime(s) - EveTime(l)) < absl::Seconds(1));
        // The rest of the line is the daemon's, field for field (the rate limiter's count aside).
        json a = s, b = l;
        for (json* j : {&a, &b}) {
          j->erase("timestamp");
          j->erase("in_iface");       // live only
          j->erase("pcap_filename");  // scan only
          (*j)["bannerwatch"].erase("suppressed");
        }
        CHECK(a == b);
        break;
      }
}

// One case's setup: the topology, the daemon with `policy`, a capture of the host's veth.
struct Case {
  Topology t;
  Daemon d;
  std::string policy_copy;  // the same policy text, for the scan
  std::unique_ptr<Tcpdump> cap;

  explicit Case(const std::string& policy) : d(t, policy) {
    policy_copy = t.dir() + "/scan-policy.yaml";
    WriteFile(policy_copy, policy);
  }
  void Capture(const std::string& name = "capture.pcap") {
    d.Start();
    cap = std::make_unique<Tcpdump>(t.host(), kHostIf, t.dir() + "/" + name);
  }
  // Stops the capture and scans it as the suite's documentation says.
  ScanRun StopAndScan() {
    Settle(400);
    std::string report = cap->Stop();
    INFO("tcpdump: " << report);
    CHECK(report.find("\n0 packets dropped by kernel") != std::string::npos);
    return ScanCapture(policy_copy, cap->path(), kLocals);
  }
};

TEST_CASE("traffic: OpenSSH on 443 and a real ssh client raise 1000146 and 1000147, live and offline") {
  Case c(kAlertPolicy);
  auto sshd = StartSshd(c.t, 443);
  c.Capture();
  std::string out;
  CHECK(SshProbe(c.t, kServerV4, 443, 5, &out) == 255);
  INFO("ssh: " << out);
  CHECK(out.find("Permission denied") != std::string::npos);
  CHECK(SshProbe(c.t, kServerV6, 443, 5, &out) == 255);
  CHECK(WaitFor([&] { return WithSid(c.d.EveLines(), 1000146).size() == 2; }, 5000));
  ScanRun scan = c.StopAndScan();
  std::vector<json> live = c.d.EveLines();
  CHECK(WithSid(live, 1000146).size() == 2u);  // IPv4 and IPv6
  CHECK(WithSid(live, 1000147).size() == 2u);
  for (const json& j : live) CHECK(j["alert"]["action"] == "allowed");
  CheckLiveMatchesScan(live, scan);
  CHECK(scan.eve.size() == 4u);
  CHECK(std::filesystem::path(scan.eve.at(0)["pcap_filename"].get<std::string>()).filename() ==
        "capture.pcap");
}

TEST_CASE("traffic: dropbear on 443 raises 1000146") {
  Case c(kAlertPolicy);
  auto db = StartDropbear(c.t, 443);
  c.Capture();
  std::string out;
  CHECK(SshProbe(c.t, kServerV4, 443, 5, &out) == 255);
  INFO("ssh: " << out);
  CHECK(out.find("Permission denied") != std::string::npos);  // banners and keys were exchanged
  CHECK(WaitFor([&] { return !WithSid(c.d.EveLines(), 1000146).empty(); }, 5000));
  ScanRun scan = c.StopAndScan();
  std::vector<json> live = c.d.EveLines();
  REQUIRE(WithSid(live, 1000146).size() == 1u);
  for (const json& j : live)
    if (j["alert"]["signature_id"] == 1000146)
      CHECK(j["bannerwatch"]["banner"].get<std::string>().rfind("SSH-2.0-dropbear", 0) == 0);
  CheckLiveMatchesScan(live, scan);
}

TEST_CASE("traffic: sslh on 443: the SSH session alerts, the TLS session does not") {
  Case c(kAlertPolicy);
  auto sshd = StartSshd(c.t, 22);
  auto web = StartNginx(c.t, {{kServerV4, 4443, true}});
  auto mux = StartSslh(c.t, 443, 22, 4443);
  c.Capture();
  std::string body;
  CHECK(Curl(c.t, std::string("https://") + kServerV4 + "/", 3, &body) == 0);
  CHECK(body == kTestPage);
  Settle(400);
  CHECK(c.d.EveLines().empty());  // TLS through sslh: nothing
  std::string out;
  CHECK(SshProbe(c.t, kServerV4, 443, 5, &out) == 255);
  INFO("ssh: " << out);
  CHECK(out.find("Permission denied") != std::string::npos);
  CHECK(WaitFor([&] { return !WithSid(c.d.EveLines(), 1000146).empty(); }, 5000));
  ScanRun scan = c.StopAndScan();
  std::vector<json> live = c.d.EveLines();
  CHECK(WithSid(live, 1000146).size() == 1u);
  CHECK(WithSid(live, 1000147).size() == 1u);
  CHECK(live.size() == 2u);
  CheckLiveMatchesScan(live, scan);
}

TEST_CASE("traffic: banner.server drop: SSH via sslh on 443 cannot be established, HTTPS on the same address and port still works") {
  Case c(kDropPolicy);
  auto sshd = StartSshd(c.t, 22);
  auto web = StartNginx(c.t, {{kServerV4, 4443, true}});
  auto mux = StartSslh(c.t, 443, 22, 4443);
  c.Capture();
  // The server's side of the veth sees the server's frames before the host's XDP drops them.
  Tcpdump server_side(c.t.server(), kServerIf, c.t.dir() + "/server-side.pcap");
  std::string out;
  int st = SshProbe(c.t, kServerV4, 443, 2, &out);
  INFO("ssh: " << out);
  CHECK(st == 255);
  CHECK(out.find("timed out") != std::string::npos);  // the server's banner never arrives
  CHECK(out.find("Permission denied") == std::string::npos);
  std::string body;
  CHECK(Curl(c.t, std::string("https://") + kServerV4 + ":443/", 3, &body) == 0);
  CHECK(body == kTestPage);
  Settle(400);
  std::vector<json> live = c.d.EveLines();
  std::set<FlowKey> dropped = Flows(live, "blocked");
  REQUIRE(dropped.size() == 1u);
  CHECK(std::get<0>(*dropped.begin()) == 1000146);
  CHECK(WithSid(live, 1000147).size() == 1u);  // the client's banner went out (alert only)
  CHECK(live.size() == 2u);
  json s = c.d.Status();
  CHECK(s["counters"]["ingress"]["banner_drops"] == 1);
  CHECK(s["counters"]["ingress"]["flow_drops"].get<int>() + s["counters"]["egress"]["flow_drops"].get<int>() > 0);

  ScanRun scan = c.StopAndScan();
  CheckLiveMatchesScan(live, scan);
  CHECK(Flows(scan.eve, "blocked").empty());  // the dropped banner is not in the host's capture
  server_side.Stop();
  ScanRun far = ScanCapture(c.policy_copy, server_side.path(), kLocals);
  Report("server-side capture", live, far);
  INFO("server-side scan:\n" << far.summary);
  REQUIRE(far.status == 0);
  CHECK(Flows(far.eve) == Flows(live));  // here the dropped frames are visible: the same flows
  CHECK(far.summary.find("verdicts: pass ") != std::string::npos);
  CHECK(far.summary.find(", drop 0\n") == std::string::npos);
}

TEST_CASE("traffic: nginx with TLS on 443 and plain HTTP on 443 raise no banner alert") {
  Case c(kQuietPolicy);
  REQUIRE(c.t.server().Run(std::string("ip addr add ") + kServerV4b + "/24 dev " + kServerIf) == 0);
  auto web = StartNginx(c.t, {{kServerV4, 443, true}, {kServerV4b, 443, false}});
  c.Capture();
  std::string body;
  CHECK(Curl(c.t, std::string("https://") + kServerV4 + "/", 3, &body) == 0);
  CHECK(body == kTestPage);
  CHECK(Curl(c.t, std::string("http://") + kServerV4b + ":443/", 3, &body) == 0);
  CHECK(body == kTestPage);
  ScanRun scan = c.StopAndScan();
  std::vector<json> live = c.d.EveLines();
  CHECK(WithSid(live, 1000146).empty());
  CHECK(WithSid(live, 1000147).empty());
  CHECK(live.empty());  // not even non_tls (1000150): TLS is TLS, HTTP is HTTP
  CheckLiveMatchesScan(live, scan);
  CHECK(scan.summary.find("alerts: 0\n") != std::string::npos);
  json s = c.d.Status();
  CHECK(s["counters"]["ingress"]["tcp"].get<int>() > 0);
}

// The far end of the CONNECT is the server's own sshd on 443 and tinyproxy runs in the server
// namespace too, so at the protected host the banner arrives from the proxy's port 8888, which is
// not a watched port: the alert comes from the kernel following "CONNECT 198.51.100.2:443" on a
// proxy port (proxy_ports) and taking the first segment after the proxy's 200 reply as the far
// server's. The scan of the capture follows the tunnel the same way.
TEST_CASE("traffic: SSH through an HTTP CONNECT proxy (tinyproxy) to a server on 443 raises 1000146") {
  Case c(kProxyPolicy);
  auto sshd = StartSshd(c.t, 443);
  auto proxy = StartTinyproxy(c.t, 8888);
  c.Capture();
  std::string out;
  int st = SshProbe(c.t, kServerV4, 443, 5, &out,
                    std::string("-o ProxyCommand='nc -X connect -x ") + kServerV4 + ":8888 %h %p'");
  INFO("ssh: " << out);
  CHECK(st == 255);
  CHECK(out.find("Permission denied") != std::string::npos);  // the tunnel worked
  bool alerted = WaitFor([&] { return !WithSid(c.d.EveLines(), 1000146).empty(); }, 3000);
  ScanRun scan = c.StopAndScan();
  std::vector<json> live = c.d.EveLines();
  INFO("live alerts: " << Show(Flows(live)));
  CHECK(alerted);
  REQUIRE(live.size() == 1u);  // the client's banner goes to port 8888: no 1000147
  CHECK(live[0]["alert"]["signature_id"] == 1000146);
  CHECK(live[0]["src_ip"] == kServerV4);
  CHECK(live[0]["src_port"] == 8888);  // relayed by the proxy
  CHECK(live[0]["bannerwatch"]["match"] == "connect_tunnel");
  CHECK(live[0]["bannerwatch"]["banner"].get<std::string>().rfind("SSH-2.0-OpenSSH", 0) == 0);
  CheckLiveMatchesScan(live, scan);
  REQUIRE(scan.eve.size() == 1u);
  CHECK(scan.eve[0]["bannerwatch"]["match"] == "connect_tunnel");
}

TEST_CASE("traffic: SSH wrapped in TLS by stunnel on 443 raises no banner alert (the documented limit)") {
  Case c(kQuietPolicy);
  auto sshd = StartSshd(c.t, 22);
  auto tunnel = StartStunnel(c.t, 443, 22);
  c.Capture();
  std::string out;
  int st = SshProbe(c.t, kServerV4, 443, 5, &out,
                    "-o ProxyCommand='openssl s_client -quiet -verify_quiet -connect %h:%p'");
  INFO("ssh: " << out);
  CHECK(st == 255);
  CHECK(out.find("Permission denied") != std::string::npos);  // a real SSH session, inside TLS
  ScanRun scan = c.StopAndScan();
  std::vector<json> live = c.d.EveLines();
  CHECK(WithSid(live, 1000146).empty());
  CHECK(WithSid(live, 1000147).empty());
  CHECK(live.empty());  // and no non_tls either: to the data plane it is TLS
  CheckLiveMatchesScan(live, scan);
}

TEST_CASE("traffic: outbound, the protected host cannot reach a blocked subnet, reaches others, and in watch mode connects with 1000149") {
  Case c(kOutboundBlockPolicy);
  // 203.0.113.10 lives behind the server (on its veth end); the host routes the subnet there.
  REQUIRE(c.t.server().Run(std::string("ip addr add ") + kFarServer + "/32 dev " + kServerIf) == 0);
  REQUIRE(c.t.host().Run(std::string("ip route add 203.0.113.0/24 via ") + kServerV4) == 0);
  auto web = StartNginx(c.t, {{kServerV4, 80, false}, {kFarServer, 80, false}});
  c.Capture("block.pcap");
  std::string body;
  int st = Curl(c.t, std::string("http://") + kFarServer + "/", 2, &body);
  INFO("curl: " << body);
  CHECK(st == 28);  // connect timed out: the SYNs were dropped on egress
  CHECK(Curl(c.t, std::string("http://") + kServerV4 + "/", 3, &body) == 0);
  CHECK(body == kTestPage);
  ScanRun scan = c.StopAndScan();
  std::vector<json> live = c.d.EveLines();
  std::set<FlowKey> blocked = WithSid(live, 1000148);
  REQUIRE(!blocked.empty());  // rate-limited: one per second per remote
  for (const json& j : live) {
    CHECK(j["alert"]["signature_id"] == 1000148);
    CHECK(j["dest_ip"] == kFarServer);
    CHECK(j["bannerwatch"]["direction"] == "egress");
    CHECK(j["bannerwatch"]["list"] == "outbound-block");
  }
  json s = c.d.Status();
  CHECK(s["counters"]["egress"]["block_drops"].get<int>() >= 2);  // the SYN and its retransmission
  // TC egress shot the SYNs before tcpdump's tap: the capture has no frame toward 203.0.113.10,
  // so the scan has no block alert.
  CheckLiveMatchesScan(live, scan);
  CHECK(Flows(scan.eve).empty());

  // Watch mode: the same subnet watched instead of blocked.
  size_t before = live.size();
  c.d.WritePolicy(kOutboundWatchPolicy);
  WriteFile(c.policy_copy, kOutboundWatchPolicy);
  REQUIRE(c.d.Cli("reload", &body) == 0);
  c.cap = std::make_unique<Tcpdump>(c.t.host(), kHostIf, c.t.dir() + "/watch.pcap");
  CHECK(Curl(c.t, std::string("http://") + kFarServer + "/", 3, &body) == 0);
  CHECK(body == kTestPage);
  CHECK(WaitFor([&] { return WithSid(c.d.EveLines(), 1000149).size() == 2; }, 5000));
  ScanRun watch = c.StopAndScan();
  live = c.d.EveLines();
  std::vector<json> after(live.begin() + static_cast<long>(before), live.end());
  std::set<FlowKey> watched = WithSid(after, 1000149);
  INFO("watch alerts " << Show(watched));
  CHECK(after.size() == 2u);  // the SYN out and the SYN-ACK back
  CHECK(watched.size() == 2u);
  for (const json& j : after) CHECK(j["bannerwatch"]["list"] == "outbound-watch");
  CheckLiveMatchesScan(after, watch);
}

}  // namespace
}  // namespace bw::test
