// Evasions a Linux receiver accepts, live: frames shaped so that the receiving stack still hands
// the application what it sent, with the daemon attached to the host's end of the veth. Each
// case has a client application that reads the banner (so the shape is one Linux accepts), the
// daemon's alert, and the same alert from `scan` over a capture of the traffic.
#include <catch2/catch.hpp>
#include <string>

#include "lib/netns.hpp"
#include "lib/probe.hpp"
#include "lib/raw_server.hpp"
#include "lib/test_util.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

using json = nlohmann::json;

// Three stacked VLAN devices on `dev` in `ns`: 802.1ad 10 outside, then 802.1Q 20 and 30, the
// innermost holding `addrs` (/24 each). False when the kernel has no 802.1Q support (CONFIG_VLAN_8021Q:
// Debian's kernels have it as a module, the VM suite loads it; some build hosts' kernels lack it).
bool StackThreeVlans(Netns& ns, const std::string& dev, const std::vector<std::string>& addrs) {
  if (ns.Run("modprobe 8021q 2>/dev/null; ip link add link " + dev + " name " + dev +
             ".10 type vlan proto 802.1ad id 10") != 0)
    return false;
  std::string cmd = "ip link add link " + dev + ".10 name " + dev + ".20 type vlan id 20 && " +
                    "ip link add link " + dev + ".20 name " + dev + ".30 type vlan id 30 && " +
                    "ip link set " + dev + ".10 up && ip link set " + dev + ".20 up && " +
                    "ip link set " + dev + ".30 up";
  for (const std::string& a : addrs) cmd += " && ip addr add " + a + "/24 dev " + dev + ".30";
  REQUIRE(ns.Run(cmd) == 0);
  return true;
}

const char* kTaggedPolicy = R"(ports: [443]
banner: {server: alert, client: alert}
lists:
  - name: tagged-block
    action: block
    entries: [203.0.113.2/32]
)";

TEST_CASE("three VLAN tags: a blocked source gets nothing through, a server's banner inside raises 1000146") {
  Topology t;
  if (!StackThreeVlans(t.server(), kServerIf, {"203.0.113.2", "203.0.113.3"})) {
    WARN("not run: this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q); the VM suite runs it");
    return;
  }
  REQUIRE(StackThreeVlans(t.host(), kHostIf, {"203.0.113.1"}));
  UdpReceiver rx(t.host(), "203.0.113.1", 9999);
  // Control: without the daemon the blocked address's datagrams arrive through the three tags.
  {
    UdpFlood flood(t.server(), "203.0.113.1", 9999, t.dir() + "/sent0", "203.0.113.2");
    Settle(300);
    REQUIRE(flood.Stop() > 100u);
    REQUIRE(rx.Drain() > kGetsThrough);
  }

  Daemon d(t, kTaggedPolicy);
  d.Start();
  rx.Drain();
  uint64_t sent = 0;
  {
    UdpFlood flood(t.server(), "203.0.113.1", 9999, t.dir() + "/sent1", "203.0.113.2");
    Settle(500);
    sent = flood.Stop();
  }
  INFO("daemon log:\n" << d.log());
  CHECK(sent > 100u);
  CHECK(rx.Drain() == 0);
  json s = d.Status();
  CHECK(s["counters"]["ingress"]["block_drops"].get<uint64_t>() >= sent);
  CHECK(s["counters"]["ingress"]["vlan_limit"].get<uint64_t>() == 0u);

  // A server on the same tagged link that is not blocked: a client application reads its banner,
  // and the daemon reports it.
  Process server(&t.server(),
                 {"sh", "-c",
                  "printf 'SSH-2.0-OpenSSH_9.2p1 tagged\\r\\n' | nc -l -N 203.0.113.3 443"},
                 t.dir() + "/nc-server.log");
  REQUIRE(WaitListening(t.server(), 443));
  std::string got = t.host().Out("timeout 10 nc -w 3 203.0.113.3 443");
  CHECK(got.find("SSH-2.0-OpenSSH_9.2p1 tagged") != std::string::npos);
  bool alerted = WaitFor(
      [&] {
        for (const json& j : d.EveLines())
          if (j["alert"]["signature_id"] == 1000146 && j["src_ip"] == "203.0.113.3") return true;
        return false;
      },
      5000);
  CHECK(alerted);
}

const std::string kBanner = "SSH-2.0-OpenSSH_9.2p1 shaped\r\n";
const std::vector<std::string> kLocals = {"198.51.100.1/32", "2001:db8:100::1/128"};

// A hand-written server at `addr` sends `segments`; a client application must read kBanner, and
// the daemon and `scan` must both report 1000146 from `addr` with bannerwatch.match `match`.
void ShapedBannerAlerts(const std::string& addr, std::vector<RawSegment> segments,
                        const std::string& match) {
  Topology t;
  Daemon d(t, kEmptyPolicy);
  d.Start();
  std::string policy = t.dir() + "/scan-policy.yaml";
  WriteFile(policy, kEmptyPolicy);
  auto cap = std::make_unique<Tcpdump>(t.host(), kHostIf, t.dir() + "/capture.pcap");
  {
    RawTcpServer server(t, addr, 443, std::move(segments));
    std::string got = ReadBanner(t, addr, 443);
    INFO("the client read: " << got);
    CHECK(server.handshakes() >= 1);
    CHECK(got.find(kBanner) != std::string::npos);
  }
  auto from_addr = [&](const std::vector<json>& eve) {
    std::vector<json> out;
    for (const json& j : eve)
      if (j["alert"]["signature_id"] == 1000146 && j["src_ip"] == addr) out.push_back(j);
    return out;
  };
  INFO("daemon log:\n" << d.log());
  CHECK(WaitFor([&] { return from_addr(d.EveLines()).size() == 1; }, 5000));
  std::vector<json> live = from_addr(d.EveLines());
  REQUIRE(live.size() == 1u);
  CHECK(live[0]["bannerwatch"]["match"] == match);
  CHECK(live[0]["bannerwatch"]["banner"].get<std::string>().rfind("SSH-2.0-OpenSSH_9.2p1", 0) == 0);
  Settle(300);
  std::string report = cap->Stop();
  ScanRun scan = ScanCapture(policy, cap->path(), kLocals);
  INFO("scan: " << scan.summary);
  CHECK(scan.status == 0);
  std::vector<json> offline = from_addr(scan.eve);
  REQUIRE(offline.size() == 1u);
  CHECK(offline[0]["bannerwatch"]["match"] == match);
}

TEST_CASE("urgent data: \"X\" + banner with the urgent pointer on the X raises 1000146, live and in scan") {
  ShapedBannerAlerts("198.51.100.3", {{0, "X" + kBanner, 1}}, "stream_start");
}

TEST_CASE("overlap: a first segment starting one byte early, \"Z\" + banner, raises 1000146, live and in scan") {
  ShapedBannerAlerts("198.51.100.3", {{-1, "Z" + kBanner}}, "stream_start");
  ShapedBannerAlerts("2001:db8:100::3", {{-1, "Z" + kBanner}}, "stream_start");
}

TEST_CASE("tiny first fragment: the TCP header alone, the banner in the second fragment, raises 1000146, live and in scan") {
  ShapedBannerAlerts("198.51.100.3", {{0, kBanner, -1, 0}}, "direct");
  ShapedBannerAlerts("2001:db8:100::3", {{0, kBanner, -1, 0}}, "direct");
}

TEST_CASE("lines before the version line split over segments: \"x\", then CRLF + banner, raises 1000146") {
  ShapedBannerAlerts("198.51.100.3", {{0, "x"}, {1, "\r\n" + kBanner}}, "after_lines");
}

}  // namespace
}  // namespace bw::test
