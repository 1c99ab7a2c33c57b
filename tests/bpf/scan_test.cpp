// `bannerwatch scan`: captures written with libpcap (and a pcapng written by hand), replayed through
// the real data plane with BPF_PROG_TEST_RUN, by the library function and by the built binary.
//
// Test that: every frame runs in order, --local frames through TC egress and the rest through XDP,
// and the EVE lines are the daemon's (signature, addresses, ports, direction, list) with capture
// timestamps and pcap_filename = the capture (no in_iface); map state carries from frame to frame and file to file
// (a banner-dropped flow stays dropped); block events are rate-limited on capture time; Ethernet,
// Linux cooked v1 and v2, pcap (micro- and nanosecond) and pcapng give the same alerts; frames cut
// by the snaplen or too long for test_run still decide; the summary counts frames, verdicts,
// alerts by signature id and malformed frames; a capture that cannot be read is exit 1 naming it;
// usage errors are exit 2; the private pin root is gone afterwards.
#define PCAP_DONT_INCLUDE_PCAP_BPF_H
#include <pcap/dlt.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/scan/scan.hpp"
#include "lib/netns.hpp"
#include "lib/packet.hpp"
#include "lib/suricata_schema.hpp"
#include "lib/topology.hpp"

#ifndef DLT_LINUX_SLL2
#define DLT_LINUX_SLL2 276
#endif

namespace bw::test {
namespace {

using json = nlohmann::json;

// The file name part of a record's pcap_filename ("" if it has none).
std::string FileName(const json& j) {
  if (!j.contains("pcap_filename")) return "";
  return std::filesystem::path(j["pcap_filename"].get<std::string>()).filename().string();
}

// The seed's story, in documentation addresses plus the seed's subnet (only inside captures).
constexpr const char* kLocal = "198.51.100.10";
constexpr const char* kLocal6 = "2001:db8:100::10";
constexpr const char* kSeed = "37.9.53.12";
constexpr const char* kServer6 = "2001:db8:5::2";
constexpr const char* kBlocked = "203.0.113.7";
constexpr const char* kBlocked2 = "203.0.113.8";
const std::string kServerBanner = "SSH-2.0-OpenSSH_5.3\r\n";
const std::string kClientBanner = "SSH-2.0-PuTTY_Release_0.63\r\n";
constexpr int64_t kT0 = 1378908000;  // 2013-09-11T14:00:00Z, the day of the tip

const char* kPolicy = R"(ports: [443]
banner: {server: alert, client: alert}
block_event_interval: 1s
lists:
  - name: seed-2013-09
    action: watch
    tags: [exfil]
    reason: "mailing list tip"
    entries: [37.9.53.0/24]
  - name: scan-block
    action: block
    entries: [203.0.113.0/24]
)";

struct Rec {
  int64_t ns;  // capture time, ns since the epoch
  Bytes frame;
  uint32_t caplen = 0;  // 0: the whole frame
};

// A private directory for one test's files, removed afterwards.
class TempDir {
 public:
  TempDir() {
    path_ = absl::StrCat("/tmp/bwscan-test-", getpid(), "-", seq_++);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  static inline int seq_ = 0;
  std::string path_;
};

// A pcap file through libpcap's own writer; frames given as Ethernet, converted to `linktype`.
Bytes ToCooked(int linktype, const Bytes& eth, bool outgoing) {
  Bytes out;
  uint16_t proto = static_cast<uint16_t>(eth[12] << 8 | eth[13]);
  if (linktype == DLT_LINUX_SLL) {
    out = {0, static_cast<uint8_t>(outgoing ? 4 : 0), 0, 1 /* ARPHRD_ETHER */, 0, 6};
    out.insert(out.end(), eth.begin() + 6, eth.begin() + 12);
    out.insert(out.end(), {0, 0, static_cast<uint8_t>(proto >> 8), static_cast<uint8_t>(proto)});
  } else {
    out = {static_cast<uint8_t>(proto >> 8), static_cast<uint8_t>(proto), 0, 0, 0, 0, 0, 7,
           0, 1, static_cast<uint8_t>(outgoing ? 4 : 0), 6};
    out.insert(out.end(), eth.begin() + 6, eth.begin() + 12);
    out.insert(out.end(), {0, 0});
  }
  out.insert(out.end(), eth.begin() + 14, eth.end());
  return out;
}

bool IsFromLocal(const Bytes& eth) {
  // The scenario's local frames: IPv4 source 198.51.100.10 or IPv6 source 2001:db8:100::10.
  uint16_t t = static_cast<uint16_t>(eth[12] << 8 | eth[13]);
  if (t == 0x0800) return std::memcmp(&eth[26], Addr::Parse(kLocal).b, 4) == 0;
  if (t == 0x86dd) return std::memcmp(&eth[22], Addr::Parse(kLocal6).b, 16) == 0;
  return false;
}

void WritePcap(const std::string& path, const std::vector<Rec>& recs, int linktype = DLT_EN10MB,
               bool nano = false) {
  pcap_t* dead = pcap_open_dead_with_tstamp_precision(
      linktype, 65535, nano ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO);
  REQUIRE(dead != nullptr);
  pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
  INFO(pcap_geterr(dead));
  REQUIRE(d != nullptr);
  for (const Rec& r : recs) {
    Bytes data = linktype == DLT_EN10MB ? r.frame : ToCooked(linktype, r.frame, IsFromLocal(r.frame));
    uint32_t hdr_extra = static_cast<uint32_t>(data.size() - r.frame.size());
    pcap_pkthdr h{};
    h.ts.tv_sec = r.ns / 1000000000;
    h.ts.tv_usec = static_cast<suseconds_t>(nano ? r.ns % 1000000000 : r.ns % 1000000000 / 1000);
    h.len = static_cast<uint32_t>(data.size());
    h.caplen = r.caplen ? r.caplen + hdr_extra : h.len;
    pcap_dump(reinterpret_cast<u_char*>(d), &h, data.data());
  }
  pcap_dump_close(d);
  pcap_close(dead);
}

// libpcap 1.10 writes no pcapng: blocks by hand (SHB, IDB with if_tsresol = 9, EPBs).
void WritePcapng(const std::string& path, const std::vector<Rec>& recs) {
  Bytes f;
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) f.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  auto u16 = [&](uint16_t v) {
    f.push_back(static_cast<uint8_t>(v));
    f.push_back(static_cast<uint8_t>(v >> 8));
  };
  // Section header block: byte-order magic, version 1.0, section length unknown.
  u32(0x0A0D0D0A);
  u32(28);
  u32(0x1A2B3C4D);
  u16(1);
  u16(0);
  u32(0xffffffff);
  u32(0xffffffff);
  u32(28);
  // Interface description block: Ethernet, snaplen 0, if_tsresol = 9 (ns), end of options.
  u32(1);
  u32(32);
  u16(DLT_EN10MB);
  u16(0);
  u32(0);
  u16(9);  // if_tsresol
  u16(1);
  f.insert(f.end(), {9, 0, 0, 0});
  u16(0);  // opt_endofopt
  u16(0);
  u32(32);
  for (const Rec& r : recs) {
    uint32_t pad = (4 - r.frame.size() % 4) % 4;
    uint32_t len = static_cast<uint32_t>(32 + r.frame.size() + pad);
    uint64_t ts = static_cast<uint64_t>(r.ns);
    u32(6);  // enhanced packet block
    u32(len);
    u32(0);  // interface 0
    u32(static_cast<uint32_t>(ts >> 32));
    u32(static_cast<uint32_t>(ts));
    u32(static_cast<uint32_t>(r.frame.size()));
    u32(static_cast<uint32_t>(r.frame.size()));
    f.insert(f.end(), r.frame.begin(), r.frame.end());
    f.insert(f.end(), pad, 0);
    u32(len);
  }
  FILE* out = std::fopen(path.c_str(), "wb");
  REQUIRE(out != nullptr);
  REQUIRE(std::fwrite(f.data(), 1, f.size(), out) == f.size());
  std::fclose(out);
}

Bytes Tcp(const char* src, uint16_t sport, const char* dst, uint16_t dport, uint8_t flags,
          const std::string& payload = "") {
  PacketBuilder b;
  b.ip(Addr::Parse(src), Addr::Parse(dst)).tcp(sport, dport, flags);
  if (!payload.empty()) b.payload(payload);
  return b.build();
}

int64_t At(double seconds) { return kT0 * 1000000000 + static_cast<int64_t>(seconds * 1e9); }

// The main scenario. With --local 198.51.100.10/32 and 2001:db8:100::/64:
//   egress (TC): frames 0, 2, 4, 9;  ingress (XDP): the rest.
std::vector<Rec> Scenario() {
  std::vector<Rec> r;
  r.push_back({At(0.000), Tcp(kLocal, 51234, kSeed, 443, kSyn)});                     // 0 watch
  r.push_back({At(0.010), Tcp(kSeed, 443, kLocal, 51234, kSyn | kAck)});              // 1 watch
  r.push_back({At(0.011), Tcp(kLocal, 51234, kSeed, 443, kAck)});                     // 2
  r.push_back({At(0.020), Tcp(kSeed, 443, kLocal, 51234, kAck | kPsh, kServerBanner)});  // 3 146
  r.push_back({At(0.021), Tcp(kLocal, 51234, kSeed, 443, kAck | kPsh, kClientBanner)});  // 4 147
  r.push_back({At(0.100), Tcp(kBlocked, 4444, kLocal, 22, kSyn)});                    // 5 block
  r.push_back({At(0.300), Tcp(kBlocked, 4444, kLocal, 22, kSyn)});                    // 6 held
  r.push_back({At(0.700), Tcp(kBlocked, 4444, kLocal, 22, kSyn)});                    // 7 held
  r.push_back({At(2.500), Tcp(kBlocked, 4445, kLocal, 22, kSyn)});                    // 8 block, 2 held
  r.push_back({At(2.600), Tcp(kLocal, 40000, kBlocked2, 80, kSyn)});                  // 9 block egress
  // 10: malformed (IHL 3): addresses untrusted, counted, passed.
  r.push_back({At(3.0), PacketBuilder().ipv4("192.0.2.1", kLocal).ihl(3).tcp(1, 2).build()});
  // 11: ARP, not IP.
  r.push_back({At(3.1), PacketBuilder().ethertype(0x0806).payload(std::string(28, '\0')).build()});
  // 12: an IPv6 server banner.
  r.push_back({At(4.0), Tcp(kServer6, 443, kLocal6, 50000, kAck | kPsh, kServerBanner)});  // 146
  return r;
}

struct Result {
  absl::Status status;
  ScanReport report;
  std::vector<std::string> lines;
  std::vector<json> eve() const {
    std::vector<json> v;
    for (const auto& l : lines) v.push_back(json::parse(l));
    return v;
  }
};

std::vector<Prefix> Locals(const std::vector<std::string>& cidrs) {
  std::vector<Prefix> v;
  for (const auto& c : cidrs) {
    auto p = ParseLocalPrefix(c);
    REQUIRE(p.ok());
    v.push_back(*p);
  }
  return v;
}

const std::vector<std::string> kLocals = {"198.51.100.10/32", "2001:db8:100::/64"};

Result RunScan(const std::string& policy, const std::vector<std::string>& captures,
               const std::vector<std::string>& locals = kLocals) {
  Result r;
  ScanOptions o;
  o.config_path = policy;
  o.local = Locals(locals);
  o.captures = captures;
  r.status = Scan(o, [&](std::string_view l) { r.lines.emplace_back(l); }, &r.report);
  // The private pin root is gone, however the scan ended.
  CHECK(!std::filesystem::exists(absl::StrCat("/sys/fs/bpf/bwscan-", getpid())));
  return r;
}

struct Cli {
  int status = -1;
  std::string out, err;
};

Cli RunBinary(const TempDir& dir, const std::string& args) {
  Cli c;
  std::string err = dir / "stderr.txt";
  c.out = ShOut(BannerwatchBinary() + " scan " + args + " 2>" + err, &c.status);
  c.err = ReadFile(err);
  return c;
}

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> v;
  for (absl::string_view l : absl::StrSplit(s, '\n', absl::SkipEmpty())) v.emplace_back(l);
  return v;
}

std::string PolicyFile(const TempDir& dir, const std::string& yaml = kPolicy) {
  std::string p = dir / "policy.yaml";
  WriteFile(p, yaml);
  return p;
}

// (signature_id, src, sport, dst, dport, action) per line, in order.
using Flow = std::tuple<int, std::string, int, std::string, int, std::string>;
std::vector<Flow> Flows(const std::vector<json>& eve) {
  std::vector<Flow> v;
  for (const json& j : eve)
    v.emplace_back(j["alert"]["signature_id"].get<int>(), j["src_ip"].get<std::string>(),
                   j.value("src_port", 0), j["dest_ip"].get<std::string>(), j.value("dest_port", 0),
                   j["alert"]["action"].get<std::string>());
  return v;
}

std::set<std::string> ScanPinRoots() {
  std::set<std::string> s;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/fs/bpf", ec))
    if (e.path().filename().string().rfind("bwscan-", 0) == 0) s.insert(e.path().string());
  return s;
}

TEST_CASE("scan: every frame in order, local frames through TC egress, EVE lines with capture time") {
  TempDir dir;
  std::string policy = PolicyFile(dir);
  std::string cap = dir / "seed.pcap";
  WritePcap(cap, Scenario());
  Result r = RunScan(policy, {cap});
  INFO(r.status);
  REQUIRE(r.status.ok());
  INFO(FormatScanSummary(r.report));
  const std::vector<Flow> want = {
      {1000149, kLocal, 51234, kSeed, 443, "allowed"},     // egress SYN
      {1000149, kSeed, 443, kLocal, 51234, "allowed"},     // ingress SYN-ACK
      {1000146, kSeed, 443, kLocal, 51234, "allowed"},     // the server's banner
      {1000147, kLocal, 51234, kSeed, 443, "allowed"},     // the client's
      {1000148, kBlocked, 4444, kLocal, 22, "blocked"},    // first of three in 0.6 s
      {1000148, kBlocked, 4445, kLocal, 22, "blocked"},    // 2.4 s later: with the 2 held back
      {1000148, kLocal, 40000, kBlocked2, 80, "blocked"},  // egress toward a blocked address
      {1000146, kServer6, 443, kLocal6, 50000, "allowed"},
  };
  std::vector<json> eve = r.eve();
  CHECK(Flows(eve) == want);
  REQUIRE(eve.size() == want.size());

  // The daemon's fields, with the capture's clock and file name.
  CHECK(eve[0]["timestamp"] == "2013-09-11T14:00:00.000000+0000");
  CHECK(eve[2]["timestamp"] == "2013-09-11T14:00:00.020000+0000");
  CHECK(eve[5]["timestamp"] == "2013-09-11T14:00:02.500000+0000");
  for (const json& j : eve) {
    CHECK(FileName(j) == "seed.pcap");  // pcap_filename: the capture as given
    CHECK_FALSE(j.contains("in_iface"));  // no interface offline
  }
  CHECK(eve[0]["bannerwatch"]["direction"] == "egress");
  CHECK(eve[0]["bannerwatch"]["list"] == "seed-2013-09");
  CHECK(eve[0]["bannerwatch"]["prefix"] == "37.9.53.0/24");
  CHECK(eve[0]["bannerwatch"]["reason"] == "mailing list tip");
  CHECK(eve[1]["bannerwatch"]["direction"] == "ingress");
  CHECK(eve[2]["bannerwatch"]["banner"] == kServerBanner);
  CHECK(eve[2]["direction"] == "to_client");
  CHECK(eve[2]["alert"]["signature"] == "ET POLICY SSH banner detected on TCP 443 likely proxy evasion");
  CHECK(eve[3]["bannerwatch"]["banner"] == kClientBanner);
  CHECK(eve[3]["bannerwatch"]["direction"] == "egress");
  CHECK(eve[2]["flow_id"] == eve[3]["flow_id"]);
  CHECK(eve[4]["bannerwatch"].value("suppressed", 0) == 0);
  CHECK(eve[5]["bannerwatch"]["suppressed"] == 2);
  CHECK(eve[5]["bannerwatch"]["list"] == "scan-block");
  CHECK(eve[6]["bannerwatch"]["direction"] == "egress");
  CHECK(eve[7]["bannerwatch"]["direction"] == "ingress");

  const ScanReport& s = r.report;
  CHECK(s.captures == 1u);
  CHECK(s.frames == 13u);
  CHECK(s.egress == 4u);
  CHECK(s.ingress == 9u);
  CHECK(s.drop == 5u);  // four SYNs from the blocked address, one toward the other
  CHECK(s.pass == 8u);
  CHECK(s.not_run == 0u);
  CHECK(s.trimmed == 0u);
  CHECK(s.events_held == 2u);
  CHECK(s.alerts == std::map<uint32_t, uint64_t>{{1000146, 2}, {1000147, 1}, {1000148, 3}, {1000149, 2}});
  // The kernel's own counters agree.
  CHECK(s.counters[BW_DIR_INGRESS][BW_CNT_packets] == 9u);
  CHECK(s.counters[BW_DIR_EGRESS][BW_CNT_packets] == 4u);
  CHECK(s.counters[BW_DIR_INGRESS][BW_CNT_malformed] == 1u);
  CHECK(s.counters[BW_DIR_INGRESS][BW_CNT_non_ip] == 1u);
  CHECK(s.counters[BW_DIR_INGRESS][BW_CNT_block_drops] == 4u);
  CHECK(s.counters[BW_DIR_EGRESS][BW_CNT_block_drops] == 1u);
  CHECK(s.counters[BW_DIR_INGRESS][BW_CNT_events_suppressed] == 0u);  // the kernel's limiter is off

  std::string sum = FormatScanSummary(s);
  CHECK(sum.find("frames: 13 (ingress 9, egress 4, not run 0, trimmed 0)\n") != std::string::npos);
  CHECK(sum.find("verdicts: pass 8, drop 5\n") != std::string::npos);
  CHECK(sum.find("alerts: 8 (1000146: 2, 1000147: 1, 1000148: 3, 1000149: 2)\n") != std::string::npos);
  CHECK(sum.find("malformed: 1 (ingress 1, egress 0)\n") != std::string::npos);
  CHECK(sum.find("block and watch events held back: 2") != std::string::npos);
}

TEST_CASE("scan: with eve.schema suricata-7 every line validates against Suricata 7's schema") {
  TempDir dir;
  WritePcap(dir / "seed.pcap", Scenario());
  Result r = RunScan(PolicyFile(dir, std::string(kPolicy) + "eve: { schema: suricata-7, host: s1 }\n"),
                     {dir / "seed.pcap"});
  INFO(r.status);
  REQUIRE(r.status.ok());
  std::set<int> sids;
  for (const json& j : r.eve()) {
    INFO(j.dump());
    CHECK(SuricataSchemaErrors(j).empty());
    CHECK(FileName(j) == "seed.pcap");
    sids.insert(j["alert"]["signature_id"].get<int>());
  }
  for (int sid : {1000146, 1000147, 1000148, 1000149}) CHECK(sids.count(sid));
  // The default form of the same capture is refused for bannerwatch's own keys only.
  Result d = RunScan(PolicyFile(dir, std::string(kPolicy) + "eve: { host: s1 }\n"), {dir / "seed.pcap"});
  REQUIRE(d.status.ok());
  REQUIRE(d.lines.size() == r.lines.size());
  for (const json& j : d.eve())
    CHECK(SuricataSchemaErrors(j) == std::vector<std::string>{": additional property 'bannerwatch'",
                                                              ": additional property 'host'"});
}

TEST_CASE("scan: without --local every frame is ingress") {
  TempDir dir;
  std::string cap = dir / "seed.pcap";
  WritePcap(cap, Scenario());
  Result r = RunScan(PolicyFile(dir), {cap}, {});
  REQUIRE(r.status.ok());
  CHECK(r.report.ingress == 13u);
  CHECK(r.report.egress == 0u);
  // The local host's frames now look like ones arriving from it: its SYN to the seed host has an
  // unlisted remote (the source), its banner to 443 is still a client banner, on ingress; the SYN
  // toward the second blocked address passes (the remote, its source, is not listed).
  const std::vector<Flow> want = {
      {1000149, kSeed, 443, kLocal, 51234, "allowed"},
      {1000146, kSeed, 443, kLocal, 51234, "allowed"},
      {1000147, kLocal, 51234, kSeed, 443, "allowed"},
      {1000148, kBlocked, 4444, kLocal, 22, "blocked"},
      {1000148, kBlocked, 4445, kLocal, 22, "blocked"},
      {1000146, kServer6, 443, kLocal6, 50000, "allowed"},
  };
  std::vector<json> eve = r.eve();
  CHECK(Flows(eve) == want);
  REQUIRE(eve.size() == want.size());
  CHECK(eve[2]["bannerwatch"]["direction"] == "ingress");
  CHECK(r.report.drop == 4u);
}

TEST_CASE("scan: a banner-dropped flow stays dropped across frames and files") {
  TempDir dir;
  std::string policy = PolicyFile(dir, R"(ports: [443]
banner: {server: drop, client: alert}
lists: []
)");
  std::vector<Rec> a = {
      {At(0.0), Tcp(kLocal, 51000, kSeed, 443, kSyn)},
      {At(0.1), Tcp(kSeed, 443, kLocal, 51000, kSyn | kAck)},
      {At(0.2), Tcp(kLocal, 51000, kSeed, 443, kAck)},
      {At(0.3), Tcp(kSeed, 443, kLocal, 51000, kAck | kPsh, kServerBanner)},  // dropped
  };
  std::vector<Rec> b = {
      {At(0.4), Tcp(kLocal, 51000, kSeed, 443, kAck)},                        // flow: dropped
      {At(0.5), Tcp(kSeed, 443, kLocal, 51000, kAck | kPsh, "more data")},    // flow: dropped
      {At(0.6), Tcp(kLocal, 51001, kSeed, 443, kAck | kPsh, "GET / HTTP/1.1\r\n\r\n")},  // other flow
  };
  WritePcap(dir / "a.pcap", a);
  WritePcap(dir / "b.pcap", b);
  Result r = RunScan(policy, {dir / "a.pcap", dir / "b.pcap"});
  INFO(r.status);
  REQUIRE(r.status.ok());
  INFO(FormatScanSummary(r.report));
  std::vector<json> eve = r.eve();
  REQUIRE(eve.size() == 1u);
  CHECK(eve[0]["alert"]["signature_id"] == 1000146);
  CHECK(eve[0]["alert"]["action"] == "blocked");
  CHECK(FileName(eve[0]) == "a.pcap");
  CHECK(r.report.captures == 2u);
  CHECK(r.report.frames == 7u);
  CHECK(r.report.drop == 3u);
  CHECK(r.report.pass == 4u);
  CHECK(r.report.counters[BW_DIR_INGRESS][BW_CNT_flow_drops] == 1u);
  CHECK(r.report.counters[BW_DIR_EGRESS][BW_CNT_flow_drops] == 1u);
  CHECK(r.report.counters[BW_DIR_INGRESS][BW_CNT_banner_drops] == 1u);
}

TEST_CASE("scan: Linux cooked v1 and v2, nanosecond pcap and pcapng give the same alerts") {
  TempDir dir;
  std::string policy = PolicyFile(dir);
  WritePcap(dir / "eth.pcap", Scenario());
  Result base = RunScan(policy, {dir / "eth.pcap"});
  REQUIRE(base.status.ok());
  REQUIRE(base.lines.size() == 8u);
  auto without_iface = [](const Result& r) {
    std::vector<json> v = r.eve();
    for (json& j : v) j.erase("pcap_filename");
    return v;
  };
  struct Variant {
    const char* name;
    std::function<void(const std::string&)> write;
  };
  std::vector<Variant> variants = {
      {"sll.pcap", [](const std::string& p) { WritePcap(p, Scenario(), DLT_LINUX_SLL); }},
      {"sll2.pcap", [](const std::string& p) { WritePcap(p, Scenario(), DLT_LINUX_SLL2); }},
      {"nano.pcap", [](const std::string& p) { WritePcap(p, Scenario(), DLT_EN10MB, true); }},
      {"seed.pcapng", [](const std::string& p) { WritePcapng(p, Scenario()); }},
  };
  for (const Variant& v : variants) {
    INFO(v.name);
    v.write(dir / v.name);
    Result r = RunScan(policy, {dir / v.name});
    INFO(r.status);
    REQUIRE(r.status.ok());
    CHECK(without_iface(r) == without_iface(base));
    CHECK(FileName(r.eve()[0]) == v.name);
    CHECK(r.report.frames == base.report.frames);
    CHECK(r.report.egress == base.report.egress);
    CHECK(r.report.drop == base.report.drop);
  }

  // Nanoseconds survive (to the microseconds EVE prints, truncated).
  std::vector<Rec> fine = {{At(0) + 123456789, Tcp(kSeed, 443, kLocal, 1, kAck | kPsh, kServerBanner)}};
  WritePcapng(dir / "fine.pcapng", fine);
  WritePcap(dir / "fine.pcap", fine, DLT_EN10MB, true);
  for (const char* name : {"fine.pcapng", "fine.pcap"}) {
    Result r = RunScan(policy, {dir / name});
    REQUIRE(r.status.ok());
    REQUIRE(r.lines.size() == 1u);
    CHECK(r.eve()[0]["timestamp"] == "2013-09-11T14:00:00.123456+0000");
  }
}

TEST_CASE("scan: frames cut by the snaplen or too long for test_run still decide, trimmed") {
  TempDir dir;
  std::string policy = PolicyFile(dir);
  std::string big(8000, 'x');
  Bytes snapped = Tcp(kSeed, 443, kLocal, 1000, kAck | kPsh, kServerBanner + std::string(900, 'y'));
  Bytes jumbo = Tcp(kSeed, 443, kLocal, 1001, kAck | kPsh, kServerBanner + big);
  Bytes jumbo_out = Tcp(kLocal, 1002, kSeed, 443, kAck | kPsh, kClientBanner + big);
  Bytes blocked_cut = Tcp(kBlocked, 9, kLocal, 10, kSyn);
  std::vector<Rec> recs = {
      {At(0), snapped, 14 + 20 + 20 + 10},  // headers and 10 payload bytes on disk
      {At(1), jumbo},
      {At(2), jumbo_out},  // egress: TC's test_run limit too
      {At(3), blocked_cut, 14 + 20 + 8},  // the TCP header cut: the address still decides
      // Egress frames shorter than TC's test_run takes (IPv4 < 34, IPv6 < 54 bytes): padded,
      // run, and malformed (the IP header, resp. the TCP header, is not all there).
      {At(4), Tcp(kLocal, 5, kSeed, 443, kSyn), 30},
      {At(5), Tcp(kLocal6, 5, kServer6, 443, kSyn), 50},
  };
  WritePcap(dir / "cut.pcap", recs);
  Result r = RunScan(policy, {dir / "cut.pcap"});
  INFO(r.status);
  REQUIRE(r.status.ok());
  INFO(FormatScanSummary(r.report));
  std::vector<json> eve = r.eve();
  REQUIRE(eve.size() == 4u);
  CHECK(eve[0]["alert"]["signature_id"] == 1000146);
  CHECK(eve[0]["bannerwatch"]["banner"] == kServerBanner.substr(0, 10));  // what the capture holds
  CHECK(eve[1]["alert"]["signature_id"] == 1000146);
  CHECK(eve[1]["bannerwatch"]["banner"].get<std::string>().rfind(kServerBanner, 0) == 0);
  CHECK(eve[2]["alert"]["signature_id"] == 1000147);
  CHECK(eve[3]["alert"]["signature_id"] == 1000148);
  CHECK(r.report.trimmed == 6u);
  CHECK(r.report.drop == 1u);
  CHECK(r.report.egress == 3u);
  CHECK(r.report.counters[BW_DIR_INGRESS][BW_CNT_malformed] == 1u);  // the cut TCP header
  CHECK(r.report.counters[BW_DIR_EGRESS][BW_CNT_malformed] == 2u);
}

TEST_CASE("scan: the binary prints the library's lines and the summary, exit 0") {
  TempDir dir;
  std::string policy = PolicyFile(dir);
  std::string cap = dir / "seed.pcap";
  WritePcap(cap, Scenario());
  Result lib = RunScan(policy, {cap});
  REQUIRE(lib.status.ok());
  std::set<std::string> roots = ScanPinRoots();
  Cli c = RunBinary(dir, "--config " + policy + " --local 198.51.100.10/32 --local=2001:db8:100::/64 " + cap);
  INFO(c.err);
  CHECK(c.status == 0);
  CHECK(Lines(c.out) == lib.lines);
  CHECK(c.err == FormatScanSummary(lib.report));
  CHECK(ScanPinRoots() == roots);  // its pin root is gone

  // Several files, one stream: from stdin too, named "-" as on the command line.
  c = RunBinary(dir, "--config " + policy + " " + cap + " - < " + cap);
  CHECK(c.status == 0);
  std::vector<std::string> lines = Lines(c.out);
  REQUIRE(lines.size() >= 2u);
  CHECK(FileName(json::parse(lines.front())) == "seed.pcap");
  CHECK(json::parse(lines.back())["pcap_filename"] == "-");
  CHECK(c.err.find("captures: 2\n") != std::string::npos);
  CHECK(c.err.find("frames: 26 (ingress 26, egress 0") != std::string::npos);
}

TEST_CASE("scan: a capture that cannot be read is exit 1 naming it, usage errors exit 2") {
  TempDir dir;
  std::string policy = PolicyFile(dir);
  std::string good = dir / "seed.pcap";
  WritePcap(good, Scenario());
  std::set<std::string> roots = ScanPinRoots();

  // Missing: nothing runs, nothing is printed on stdout.
  std::string missing = dir / "missing.pcap";
  Cli c = RunBinary(dir, "--config " + policy + " " + good + " " + missing);
  CHECK(c.status == 1);
  CHECK(c.out.empty());
  CHECK(c.err.find(missing + ": No such file or directory") != std::string::npos);
  Result r = RunScan(policy, {missing});
  CHECK(!r.status.ok());
  CHECK(std::string(r.status.message()).find(missing) != std::string::npos);

  // Not a capture.
  std::string text = dir / "notes.txt";
  WriteFile(text, "SSH-2.0-this is not a capture\n");
  c = RunBinary(dir, "--config " + policy + " " + text);
  CHECK(c.status == 1);
  CHECK(c.err.find(text + ": ") != std::string::npos);
  CHECK(c.err.find("format") != std::string::npos);

  // A link type scan does not read.
  std::string raw = dir / "raw.pcap";
  WritePcap(raw, {}, DLT_RAW);
  c = RunBinary(dir, "--config " + policy + " " + raw);
  CHECK(c.status == 1);
  CHECK(c.err.find(raw + ": unsupported link type") != std::string::npos);

  // Cut in the middle of the last record: what came before is scanned and summarized, then the
  // error names the file.
  std::string cut = dir / "cut.pcap";
  {
    std::string whole = ReadFile(good);
    WriteFile(cut, whole.substr(0, whole.size() - 20));
  }
  c = RunBinary(dir, "--config " + policy + " --local 198.51.100.10/32 " + cut);
  INFO(c.err);
  CHECK(c.status == 1);
  CHECK(c.err.find("frames: 12 ") != std::string::npos);
  CHECK(c.err.find("bannerwatch scan: " + cut + ": ") != std::string::npos);
  CHECK(c.err.find("truncated") != std::string::npos);
  CHECK(Lines(c.out).size() == 7u);  // the alerts of the 12 whole frames

  // A bad policy is exit 1 too, naming the file and line.
  std::string bad = dir / "bad.yaml";
  WriteFile(bad, "ports: [443]\nbanner: {server: maybe}\n");
  c = RunBinary(dir, "--config " + bad + " " + good);
  CHECK(c.status == 1);
  CHECK(c.err.find("bad.yaml:2") != std::string::npos);

  // A pin root given with --pin-root must be private: a non-empty one is refused, left alone.
  std::string busy = "/sys/fs/bpf/bwscan-test-busy-" + std::to_string(getpid());
  std::filesystem::create_directories(busy);
  REQUIRE(Sh("bpftool map create " + busy + "/someone_elses type array key 4 value 4 entries 1 name x") == 0);
  c = RunBinary(dir, "--config " + policy + " --pin-root " + busy + " " + good);
  CHECK(c.status == 1);
  CHECK(c.err.find("is not empty") != std::string::npos);
  CHECK(std::filesystem::exists(busy + "/someone_elses"));
  std::filesystem::remove_all(busy);
  std::string mine = "/sys/fs/bpf/bwscan-test-own-" + std::to_string(getpid());
  c = RunBinary(dir, "--config " + policy + " --pin-root " + mine + " " + good);
  CHECK(c.status == 0);
  CHECK(!std::filesystem::exists(mine));

  // Usage.
  CHECK(RunBinary(dir, "--config " + policy).status == 2);
  c = RunBinary(dir, "--config " + policy + " --local 198.51.100.300 " + good);
  CHECK(c.status == 2);
  CHECK(c.err.find("198.51.100.300") != std::string::npos);
  CHECK(RunBinary(dir, "--bogus " + good).status == 2);
  CHECK(RunBinary(dir, "-x " + good).status == 2);
  CHECK(RunBinary(dir, good + " --local").status == 2);
  c = RunBinary(dir, "--help");
  CHECK(c.status == 0);
  CHECK(c.out.find("capture time") != std::string::npos);
  CHECK(ScanPinRoots() == roots);
}

}  // namespace
}  // namespace bw::test
