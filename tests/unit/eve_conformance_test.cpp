// EVE conformance: community_id in the records, host, pcap_filename, Suricata's protocol names,
// signature messages that name the matched port, and the `eve.schema: suricata-7` form checked
// against the rules of Suricata 7's etc/schema.json, written as facts in tests/lib/suricata_schema.cpp.
#include <arpa/inet.h>
#include <openssl/evp.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "daemon/events/community_id.hpp"
#include "daemon/events/eve_writer.hpp"
#include "daemon/events/signatures.hpp"
#include "lib/suricata_schema.hpp"

namespace {

using nlohmann::json;

void SetAddr(uint8_t out[16], const char* text) {
  std::memset(out, 0, 16);
  if (inet_pton(AF_INET, text, out) == 1) return;
  REQUIRE(inet_pton(AF_INET6, text, out) == 1);
}

bw_event Event(uint8_t kind, const char* src, uint16_t sport, const char* dst, uint16_t dport,
               uint8_t proto = IPPROTO_TCP) {
  bw_event e{};
  e.ts_ns = 5'000'000'000ULL;
  e.ifindex = 2;
  e.kind = kind;
  e.family = std::strchr(src, ':') ? BW_FAMILY_V6 : BW_FAMILY_V4;
  e.l4proto = proto;
  e.tcp_flags = proto == IPPROTO_TCP ? 0x18 : 0;
  SetAddr(e.saddr, src);
  SetAddr(e.daddr, dst);
  // TCP, UDP: the ports; ICMP, ICMPv6: the type and the code (as the data plane fills them).
  if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
    e.sport = htons(sport);
    e.dport = htons(dport);
  }
  return e;
}

bw_event Banner(bw_event e, uint8_t side, std::string_view bytes, uint8_t match = BW_MATCH_DIRECT) {
  e.banner_side = side;
  e.match = match;
  e.banner_len = static_cast<uint8_t>(bytes.size());
  std::memcpy(e.banner, bytes.data(), bytes.size());
  return e;
}

struct Lookup : bw::EveLookup {
  std::string ifname = "eth0";
  std::string pcap;
  std::vector<std::string> tags = {"seed", "ukraine"};
  std::string_view IfName(uint32_t) const override { return ifname; }
  std::string_view PcapFilename() const override { return pcap; }
  bool List(uint32_t id, bw::EveListInfo* out) const override {
    if (id != 1) return false;
    out->name = "seed-ssh-over-443";
    out->tags = tags;
    out->reason = "beaconing \"over\" 443";
    return true;
  }
  std::string_view EntrySourceId(uint32_t ref) const override {
    return ref == 7 ? std::string_view("SBL123456") : std::string_view();
  }
  bool IsWatchedPort(uint16_t p) const override { return p == 443 || p == 8443; }
};

constexpr int64_t kWall = 1795833783LL * 1000000000 + 123456789;

json Format(bw::EveFormatter& f, const bw_event& ev, const bw::EveExtra& extra = {}) {
  auto line = f.FormatAt(ev, kWall, extra);
  REQUIRE(line.ok());
  INFO(*line);
  return json::parse(*line);
}

// Every kind of record the writer makes: all signatures, every banner match and side, both
// families and directions, TCP/UDP/ICMP/ICMPv6/other protocols and unread ones, with and without
// list metadata, live and from a capture.
std::vector<bw_event> AllKindsOfEvents() {
  std::vector<bw_event> v;
  for (uint8_t m : {BW_MATCH_DIRECT, BW_MATCH_SPLIT, BW_MATCH_PRELINES, BW_MATCH_CONNECT,
                    BW_MATCH_STREAM}) {
    v.push_back(Banner(Event(BW_EV_BANNER, "37.9.53.12", 8443, "198.51.100.10", 51234),
                       BW_SIDE_SERVER, "SSH-2.0-OpenSSH_9.2\r\n", m));
  }
  v.push_back(Banner(Event(BW_EV_BANNER, "2001:db8::10", 50000, "2001:db8:bad::1", 443),
                     BW_SIDE_CLIENT, std::string_view("SSH-2.0-\x01\xff\"\\x\0", 14)));
  bw_event non_tls = Banner(Event(BW_EV_NON_TLS, "203.0.113.7", 443, "198.51.100.10", 51234),
                            BW_SIDE_SERVER, "+OK \x80 ready\r\n");
  v.push_back(non_tls);
  bw_event block = Event(BW_EV_BLOCK, "37.9.53.12", 443, "198.51.100.10", 51234);
  block.verdict = BW_VERDICT_DROP;
  block.list_id = 1;
  block.list_action = BW_ACTION_BLOCK;
  block.prefixlen = 24;
  block.entry_ref = 7;
  block.suppressed = 3;
  v.push_back(block);
  bw_event watch = Event(BW_EV_WATCH, "198.51.100.10", 51000, "37.9.53.12", 443);
  watch.direction = BW_DIR_EGRESS;
  watch.tcp_flags = 0x02;
  watch.list_id = 42;  // unknown to the lookup: list_id instead of list
  watch.list_action = BW_ACTION_WATCH;
  watch.prefixlen = 32;
  v.push_back(watch);
  v.push_back(Event(BW_EV_BLOCK, "37.9.53.40", 0, "198.51.100.10", 0, IPPROTO_ICMP));
  v.push_back(Event(BW_EV_BLOCK, "2001:db8:bad::5", 0, "2001:db8::1", 0, IPPROTO_ICMPV6));
  v.push_back(Event(BW_EV_BLOCK, "37.9.53.41", 0, "198.51.100.10", 0, 47));
  v.push_back(Event(BW_EV_BLOCK, "37.9.53.41", 53, "198.51.100.10", 5353, IPPROTO_UDP));
  v.push_back(Event(BW_EV_BLOCK, "37.9.53.107", 0, "198.51.100.10", 0, 0));  // later fragment
  v.push_back(Event(BW_EV_UNPARSED, "2001:db8:bad::9", 0, "2001:db8::1", 0, 0));
  bw_event beacon = Event(BW_EV_BEACON, "198.51.100.10", 51002, "37.9.53.12", 443);
  beacon.direction = BW_DIR_EGRESS;
  beacon.tcp_flags = 0x02;
  v.push_back(beacon);
  return v;
}

// What the daemon adds: a process with every part known (a container's, with escapes in its
// strings), a refused call, a beacon's figures.
bw::ProcessContext FullProcess() {
  bw::ProcessContext pc;
  pc.pid = 4242;
  pc.tid = 4243;
  pc.ppid = 1;
  pc.uid = 1000;
  pc.gid = 1000;
  pc.name = "curl \"x\"";
  pc.executable = "/usr/bin/curl (deleted)";
  pc.user = "alice";
  pc.cgroup_id = 12345;
  pc.cgroup_path = "/system.slice/docker-" + std::string(64, 'a') + ".scope";
  pc.container = bw::ContainerRef{std::string(64, 'a'), "docker"};
  pc.systemd_unit = "";
  return pc;
}

}  // namespace

TEST_CASE("eve conformance: community_id matches the specification's vectors in real records") {
  bw::EveFormatter f;
  // baseline/README.md (corelight/community-id-spec): TCP 1.2.3.4:1122 -> 5.6.7.8:3344.
  bw_event tcp = Event(BW_EV_BLOCK, "1.2.3.4", 1122, "5.6.7.8", 3344);
  CHECK(Format(f, tcp)["community_id"] == "1:wCb3OG7yAFWelaUydu0D+125CLM=");
  bw_event back = Event(BW_EV_BLOCK, "5.6.7.8", 3344, "1.2.3.4", 1122);
  CHECK(Format(f, back)["community_id"] == "1:wCb3OG7yAFWelaUydu0D+125CLM=");
  CHECK(Format(f, Event(BW_EV_BLOCK, "1.2.3.4", 1122, "5.6.7.8", 3344, IPPROTO_UDP))["community_id"] ==
        "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=");
  // RSVP: a protocol without ports.
  CHECK(Format(f, Event(BW_EV_BLOCK, "1.2.3.4", 0, "5.6.7.8", 0, 46))["community_id"] ==
        "1:ikv3kmf89luf73WPz1jOs49S768=");
  // The seed comes from the options (the README's seed=1 table).
  bw::EveOptions o;
  o.community_id_seed = 1;
  f.set_options(o);
  CHECK(Format(f, tcp)["community_id"] == "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=");
  // ICMP: the type and code stand for the ports. The README's seed=1 table: an echo request and
  // its reply share an id, time exceeded (one way) has its own.
  CHECK(Format(f, Event(BW_EV_BLOCK, "1.2.3.4", 8, "5.6.7.8", 0, IPPROTO_ICMP))["community_id"] ==
        "1:9pr4ZGTICiuZoIh90RRYE2RyXpU=");
  CHECK(Format(f, Event(BW_EV_BLOCK, "5.6.7.8", 0, "1.2.3.4", 0, IPPROTO_ICMP))["community_id"] ==
        "1:9pr4ZGTICiuZoIh90RRYE2RyXpU=");
  CHECK(Format(f, Event(BW_EV_BLOCK, "1.2.3.4", 11, "5.6.7.8", 0, IPPROTO_ICMP))["community_id"] ==
        "1:1DD7cWGC/Yg91YGsQeni8du3pIA=");
  json echo = Format(f, Event(BW_EV_BLOCK, "1.2.3.4", 8, "5.6.7.8", 0, IPPROTO_ICMP));
  CHECK(echo["icmp_type"] == 8);
  CHECK(echo["icmp_code"] == 0);
  CHECK_FALSE(echo.contains("src_port"));
  // ICMP whose type and code were not read, SCTP (no ports) and unread protocols: none rather
  // than a wrong one.
  json unread = Format(f, Event(BW_EV_BLOCK, "1.2.3.4", BW_ICMP_UNREAD, "5.6.7.8", BW_ICMP_UNREAD, IPPROTO_ICMP));
  CHECK_FALSE(unread.contains("community_id"));
  CHECK_FALSE(unread.contains("icmp_type"));
  CHECK_FALSE(Format(f, Event(BW_EV_BLOCK, "2001:db8::1", BW_ICMP_UNREAD, "2001:db8::2", BW_ICMP_UNREAD, IPPROTO_ICMPV6)).contains("community_id"));
  CHECK_FALSE(Format(f, Event(BW_EV_BLOCK, "1.2.3.4", 0, "5.6.7.8", 0, IPPROTO_SCTP)).contains("community_id"));
  CHECK_FALSE(Format(f, Event(BW_EV_BLOCK, "1.2.3.4", 0, "5.6.7.8", 0, 0)).contains("community_id"));
}

TEST_CASE("eve conformance: host is the sensor name from the options") {
  bw::EveFormatter f;
  const bw_event ev = Event(BW_EV_BLOCK, "1.2.3.4", 1122, "5.6.7.8", 3344);
  CHECK_FALSE(Format(f, ev).contains("host"));
  bw::EveOptions o;
  o.host = "sensor-\"1\"";
  f.set_options(o);
  CHECK(Format(f, ev)["host"] == "sensor-\"1\"");
}

TEST_CASE("eve conformance: a capture is named in pcap_filename, with no in_iface") {
  Lookup l;
  l.ifname = "";
  l.pcap = "/captures/seed.pcap";
  bw::EveFormatter f(&l);
  const json j = Format(f, Event(BW_EV_BLOCK, "1.2.3.4", 1122, "5.6.7.8", 3344));
  CHECK(j["pcap_filename"] == "/captures/seed.pcap");
  CHECK_FALSE(j.contains("in_iface"));
}

TEST_CASE("eve conformance: protocol names are Suricata 7's") {
  // OISF/suricata src/util-proto-name.c, known_proto[].
  CHECK(bw::EveProtoName(IPPROTO_TCP) == "TCP");
  CHECK(bw::EveProtoName(IPPROTO_UDP) == "UDP");
  CHECK(bw::EveProtoName(IPPROTO_ICMP) == "ICMP");
  CHECK(bw::EveProtoName(IPPROTO_ICMPV6) == "IPv6-ICMP");
  CHECK(bw::EveProtoName(IPPROTO_SCTP) == "SCTP");
  CHECK(bw::EveProtoName(47) == "GRE");
  CHECK(bw::EveProtoName(50) == "ESP");
  CHECK(bw::EveProtoName(51) == "AH");
  CHECK(bw::EveProtoName(2) == "IGMP");
  CHECK(bw::EveProtoName(41) == "IPv6");
  CHECK(bw::EveProtoName(89) == "OSPF");
  CHECK(bw::EveProtoName(136) == "UDPLite");
  CHECK(bw::EveProtoName(143) == "Ethernet");
  CHECK(bw::EveProtoName(134) == "RSVP-E2E-IGNORE");  // the longest name
  CHECK(bw::EveProtoName(144) == "144");  // past the table: the number
  CHECK(bw::EveProtoName(255) == "255");
  CHECK(bw::EveProtoName(0) == "0");      // not read (documented), not HOPOPT
}

TEST_CASE("eve conformance: sid 1000146's message names the port the banner came from") {
  bw::EveFormatter f;
  const bw_event e8443 =
      Banner(Event(BW_EV_BANNER, "37.9.53.12", 8443, "198.51.100.10", 51234), BW_SIDE_SERVER, "SSH-");
  CHECK(Format(f, e8443)["alert"]["signature"] ==
        "ET POLICY SSH banner detected on TCP 8443 likely proxy evasion");
  const bw_event e443 =
      Banner(Event(BW_EV_BANNER, "37.9.53.12", 443, "198.51.100.10", 51234), BW_SIDE_SERVER, "SSH-");
  CHECK(Format(f, e443)["alert"]["signature"] ==
        "ET POLICY SSH banner detected on TCP 443 likely proxy evasion");
  const bw_event e22 =
      Banner(Event(BW_EV_BANNER, "37.9.53.12", 22, "198.51.100.10", 51234), BW_SIDE_SERVER, "SSH-");
  CHECK(Format(f, e22)["alert"]["signature"] ==
        "ET POLICY SSH banner detected on TCP 22 likely proxy evasion");
  // The others name no port.
  const bw_event client =
      Banner(Event(BW_EV_BANNER, "198.51.100.10", 51234, "37.9.53.12", 8443), BW_SIDE_CLIENT, "SSH-");
  CHECK(Format(f, client)["alert"]["signature"] ==
        "BANNERWATCH SSH client banner sent to watched TCP port likely proxy evasion");
}

TEST_CASE("eve conformance: schema suricata-7 records validate against Suricata 7's schema") {
  Lookup live;
  Lookup offline;
  offline.ifname = "";
  offline.pcap = "/captures/seed.pcap";
  for (const Lookup* l : {&live, &offline}) {
    bw::EveFormatter strict(l), plain(l);
    bw::EveOptions o;
    o.host = "sensor1";
    plain.set_options(o);
    o.schema = bw::EveSchema::kSuricata7;
    strict.set_options(o);
    std::set<uint32_t> sids;
    const bw::ProcessContext pc = FullProcess();
    bw::BeaconAlert beacon;
    beacon.score.score = 0.953;
    beacon.score.median_interval_ns = 1'000'000'000;
    beacon.score.connections = 30;
    for (const bw_event& ev : AllKindsOfEvents()) {
     for (bool with_extra : {false, true}) {
      bw::EveExtra extra;
      if (with_extra || ev.kind == BW_EV_BEACON) {
        extra.process = &pc;
        if (ev.kind == BW_EV_BLOCK) extra.refused = "connect";
      }
      if (ev.kind == BW_EV_BEACON) extra.beacon = &beacon;
      const json j = Format(strict, ev, extra);
      INFO(j.dump());
      const std::vector<std::string> err = bw::test::SuricataSchemaErrors(j);
      CHECK(err.empty());
      for (const std::string& e : err) UNSCOPED_INFO(e);
      CHECK(j.contains("timestamp"));
      CHECK(j["event_type"] == "alert");
      sids.insert(j["alert"]["signature_id"].get<uint32_t>());
      // The default form is the same record plus bannerwatch's own keys: exactly those are what
      // the schema refuses (the check above is not vacuous).
      const json d = Format(plain, ev, extra);
      std::set<std::string> refused;
      for (const std::string& e : bw::test::SuricataSchemaErrors(d)) refused.insert(e);
      std::set<std::string> want = {": additional property 'bannerwatch'", ": additional property 'host'"};
      if (!l->ifname.empty()) want.insert(": additional property 'in_iface'");
      if (extra.process) want.insert(": additional property 'process'");
      CHECK(refused == want);
      if (extra.process) {
        // The process object: ECS's names, every known part, the strings escaped.
        const json& p = d["process"];
        CHECK(p["pid"] == 4242);
        CHECK(p["thread"]["id"] == 4243);
        CHECK(p["parent"]["pid"] == 1);
        CHECK(p["name"] == "curl \"x\"");
        CHECK(p["executable"] == "/usr/bin/curl (deleted)");
        CHECK(p["user"] == json{{"id", 1000}, {"name", "alice"}});
        CHECK(p["group"]["id"] == 1000);
        CHECK(p["cgroup"]["id"] == 12345);
        CHECK(p["cgroup"]["path"] == pc.cgroup_path);
        CHECK(p["container"] == json{{"id", std::string(64, 'a')}, {"runtime", "docker"}});
        CHECK_FALSE(p.contains("systemd_unit"));  // unknown parts are left out
        // The strict form carries it as tags.
        const json& tags = j["alert"]["metadata"]["tag"];
        CHECK(std::find(tags.begin(), tags.end(), "bannerwatch.process.pid:4242") != tags.end());
        CHECK(std::find(tags.begin(), tags.end(),
                        "bannerwatch.process.container.id:" + std::string(64, 'a')) != tags.end());
      }
      if (!extra.refused.empty()) CHECK(d["bannerwatch"]["refused"] == "connect");
      if (ev.kind == BW_EV_BEACON) {
        CHECK(d["alert"]["signature_id"] == 1000152);
        CHECK(d["bannerwatch"]["kind"] == "beacon");
        CHECK(d["bannerwatch"]["beacon"]["score"] == 0.953);
        CHECK(d["bannerwatch"]["beacon"]["median_interval_s"] == 1.0);
        CHECK(d["bannerwatch"]["beacon"]["connections"] == 30);
        CHECK(d["direction"] == "to_server");
      }
     }
    }
    // Every signature that events produce is among them.
    for (const bw::Signature& s : bw::AllSignatures())
      if (s.emitted) CHECK(sids.count(s.signature_id));
  }
}

TEST_CASE("eve conformance: the strict form keeps every bannerwatch detail") {
  Lookup l;
  bw::EveFormatter plain(&l), strict(&l);
  bw::EveOptions o;
  o.host = "sensor1";
  plain.set_options(o);
  o.schema = bw::EveSchema::kSuricata7;
  strict.set_options(o);
  for (const bw_event& ev : AllKindsOfEvents()) {
    const json d = Format(plain, ev);
    const json s = Format(strict, ev);
    INFO(s.dump());
    std::multiset<std::string> tags;
    for (const json& t : s["alert"]["metadata"]["tag"]) tags.insert(t.get<std::string>());
    // Each bannerwatch field (banner and payload bytes aside) is one "bannerwatch.NAME:VALUE".
    for (const auto& [k, v] : d["bannerwatch"].items()) {
      if (k == "banner" || k == "payload") continue;
      if (k == "tcp_flags") {
        CHECK(s["tcp"]["tcp_flags"] == v);
        continue;
      }
      if (v.is_array()) {
        for (const json& x : v) CHECK(tags.count("bannerwatch." + k + ":" + x.get<std::string>()));
      } else {
        const std::string text = v.is_string() ? v.get<std::string>() : v.dump();
        CHECK(tags.count("bannerwatch." + k + ":" + text));
      }
    }
    CHECK(tags.count("bannerwatch.host:sensor1"));
    CHECK(tags.count("bannerwatch.in_iface:eth0"));
    // Banner and payload bytes: base64 in "payload", exactly; readable in "payload_printable".
    if (ev.kind == BW_EV_BANNER || ev.kind == BW_EV_NON_TLS) {
      const std::string b64 = s["payload"];
      std::vector<unsigned char> raw(b64.size());
      const int n = EVP_DecodeBlock(raw.data(), reinterpret_cast<const unsigned char*>(b64.data()),
                                    static_cast<int>(b64.size()));
      REQUIRE(n >= 0);
      const size_t pad = b64.size() >= 2 ? (b64.end()[-1] == '=') + (b64.end()[-2] == '=') : 0;
      CHECK(std::string(reinterpret_cast<char*>(raw.data()), static_cast<size_t>(n) - pad) ==
            std::string(reinterpret_cast<const char*>(ev.banner), ev.banner_len));
      const std::string printable = s["payload_printable"];
      REQUIRE(printable.size() == ev.banner_len);
      for (size_t i = 0; i < printable.size(); ++i) {
        const uint8_t c = ev.banner[i];
        const bool keep = (c >= 0x20 && c < 0x7f) || c == '\r' || c == '\n';
        CHECK(printable[i] == (keep ? static_cast<char>(c) : '.'));
      }
    } else {
      CHECK_FALSE(s.contains("payload"));
    }
  }
}
