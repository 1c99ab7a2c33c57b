// Fixture table for the data plane, run through BPF_PROG_TEST_RUN on the real, loaded object.
//
// Each row: what it shows, the program (XDP ingress or TC egress), a frame from the packet builder,
// the map contents to preload, the expected verdict, the expected events (fields checked), and the
// expected counter deltas: every counter not named in a row must stay zero. Adding a case is one row.
#include <arpa/inet.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lib/bpf_harness.hpp"
#include "lib/packet.hpp"

namespace bw::test {
namespace {

enum class Prog { kXdp, kTc };

struct ExpEvent {
  uint8_t kind;
  uint8_t verdict = BW_VERDICT_PASS;
  std::optional<uint8_t> side;        // BW_EV_BANNER
  std::optional<std::string> banner;  // exact banner bytes copied
  std::optional<std::string> src, dst;
  std::optional<uint16_t> sport, dport;
  uint32_t list_id = 0;
  uint8_t list_action = BW_ACTION_NONE;
  uint8_t prefixlen = 0;
  uint32_t suppressed = 0;
};

using Counts = std::map<bw_counter, uint64_t>;

struct Row {
  const char* what;
  Prog prog;
  std::function<Bytes()> frame;
  std::function<void(BpfHarness&)> setup;  // preload (after Reset)
  uint32_t verdict;
  std::vector<ExpEvent> events;
  Counts counts;
  int repeat = 1;                                  // frame sent this many times (events of all runs)
  std::function<void(BpfHarness&)> check = nullptr;  // extra checks on maps afterwards
};

// Remote and local documentation addresses; the seed's subnet only inside test_run packets.
constexpr const char* kRemote4 = "203.0.113.10";
constexpr const char* kLocal4 = "198.51.100.20";
constexpr const char* kRemote6 = "2001:db8:1::10";
constexpr const char* kLocal6 = "2001:db8:2::20";
constexpr const char* kSeedHost = "37.9.53.12";
const std::string kBanner = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
const std::string kLongBanner =
    "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3 with a comment long enough to pass 64 bytes\r\n";
const std::string kTlsHello = std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);

constexpr uint32_t kPass = XDP_PASS, kDrop = XDP_DROP;

PacketBuilder V4ServerBanner() {
  PacketBuilder b;
  b.ipv4(kRemote4, kLocal4).tcp(443, 51000).payload(kBanner);
  return b;
}

Counts Base4(Counts extra = {}) {
  Counts c{{BW_CNT_packets, 1}, {BW_CNT_ipv4, 1}, {BW_CNT_tcp, 1}};
  for (auto [k, v] : extra) c[k] = v;
  return c;
}
Counts Base6(Counts extra = {}) {
  Counts c{{BW_CNT_packets, 1}, {BW_CNT_ipv6, 1}, {BW_CNT_tcp, 1}};
  for (auto [k, v] : extra) c[k] = v;
  return c;
}
Counts ServerHit4() { return Base4({{BW_CNT_banner_server, 1}, {BW_CNT_events, 1}}); }

ExpEvent ServerBannerEv(const std::string& banner = kBanner) {
  ExpEvent e{BW_EV_BANNER};
  e.side = BW_SIDE_SERVER;
  e.banner = banner.substr(0, BW_BANNER_MAX);
  return e;
}
ExpEvent ClientBannerEv(const std::string& banner = kBanner) {
  ExpEvent e{BW_EV_BANNER};
  e.side = BW_SIDE_CLIENT;
  e.banner = banner.substr(0, BW_BANNER_MAX);
  return e;
}

auto Prefix(std::string cidr, uint8_t action, uint32_t list = 7) {
  return [=](BpfHarness& h) { h.AddPrefix(cidr, action, list); };
}
auto Prefixes(std::vector<std::tuple<std::string, uint8_t, uint32_t>> v) {
  return [=](BpfHarness& h) {
    for (auto& [c, a, l] : v) h.AddPrefix(c, a, l);
  };
}
auto NoSetup() {
  return [](BpfHarness&) {};
}
// bw_config.unparsed (the harness's reset leaves it at pass), then `more`.
auto Unparsed(uint8_t action, std::function<void(BpfHarness&)> more = NoSetup()) {
  return [=](BpfHarness& h) {
    auto cfg = h.maps().ReadConfig();
    REQUIRE(cfg.ok());
    cfg->unparsed = action;
    REQUIRE(h.maps().WriteConfig(*cfg).ok());
    more(h);
  };
}
// A banner from the remote server inside `tags` VLAN tags (802.1ad outside, 802.1Q inside).
Bytes TaggedBanner(int tags, const char* src = kRemote4) {
  PacketBuilder b;
  for (int i = 0; i < tags; ++i) b.vlan(static_cast<uint16_t>(i + 1), i == 0 ? 0x88a8 : 0x8100);
  return b.ipv4(src, kLocal4).tcp(443, 51000).payload(kBanner).build();
}
// A banner from the remote server behind a hop-by-hop header and `dstopts` destination options.
Bytes ChainedBanner6(int dstopts) {
  PacketBuilder b;
  b.ipv6(kRemote6, kLocal6).v6_ext(kIpprotoHopopts);
  for (int i = 0; i < dstopts; ++i) b.v6_ext(kIpprotoDstopts);
  return b.tcp(443, 40000).payload(kBanner).build();
}

std::string AddrStr(const uint8_t* b, uint8_t family) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == BW_FAMILY_V4 ? AF_INET : AF_INET6, b, buf, sizeof(buf));
  return buf;
}

void CheckEvent(const bw_event& ev, const ExpEvent& x, Prog prog) {
  CHECK(int(ev.kind) == int(x.kind));
  CHECK(int(ev.verdict) == int(x.verdict));
  CHECK(int(ev.direction) == (prog == Prog::kXdp ? BW_DIR_INGRESS : BW_DIR_EGRESS));
  CHECK(ev.ifindex == 1u);
  CHECK(ev.ts_ns > 0u);
  CHECK(ev.list_id == x.list_id);
  CHECK(int(ev.list_action) == int(x.list_action));
  CHECK(int(ev.prefixlen) == int(x.prefixlen));
  CHECK(ev.suppressed == x.suppressed);
  if (x.side) CHECK(int(ev.banner_side) == int(*x.side));
  if (x.banner) {
    CHECK(std::string(reinterpret_cast<const char*>(ev.banner), ev.banner_len) == *x.banner);
  } else {
    CHECK(int(ev.banner_len) == 0);
  }
  if (x.src) CHECK(AddrStr(ev.saddr, ev.family) == *x.src);
  if (x.dst) CHECK(AddrStr(ev.daddr, ev.family) == *x.dst);
  if (x.sport) CHECK(ntohs(ev.sport) == *x.sport);
  if (x.dport) CHECK(ntohs(ev.dport) == *x.dport);
}

// A packet from 203.0.113.10:443 with `payload`.
Bytes ServerSays(const std::string& payload) {
  return PacketBuilder().ipv4(kRemote4, kLocal4).tcp(443, 51000).payload(payload).build();
}

std::vector<Row> Rows() {
  std::vector<Row> rows;
  auto add = [&](Row r) { rows.push_back(std::move(r)); };

  // ---- banners, both sides, both families -------------------------------------------------
  {
    ExpEvent e = ServerBannerEv();
    e.src = kRemote4, e.dst = kLocal4, e.sport = 443, e.dport = 51000;
    add({"server banner from :443 over IPv4 (sid 1000146)", Prog::kXdp,
         [] { return V4ServerBanner().build(); }, NoSetup(), kPass, {e}, ServerHit4()});
  }
  {
    ExpEvent e = ClientBannerEv();
    e.src = kRemote4, e.dst = kLocal4, e.sport = 51000, e.dport = 443;
    add({"client banner to :443 over IPv4 (sid 1000147)", Prog::kXdp,
         [] { return PacketBuilder().ipv4(kRemote4, kLocal4).tcp(51000, 443).payload(kBanner).build(); },
         NoSetup(), kPass, {e}, Base4({{BW_CNT_banner_client, 1}, {BW_CNT_events, 1}})});
  }
  {
    ExpEvent e = ServerBannerEv();
    e.src = kRemote6, e.dst = kLocal6, e.sport = 443, e.dport = 40000;
    add({"server banner over IPv6", Prog::kXdp,
         [] { return PacketBuilder().ipv6(kRemote6, kLocal6).tcp(443, 40000).payload(kBanner).build(); },
         NoSetup(), kPass, {e}, Base6({{BW_CNT_banner_server, 1}, {BW_CNT_events, 1}})});
  }
  {
    ExpEvent e = ClientBannerEv();
    e.src = kRemote6, e.dst = kLocal6, e.sport = 40000, e.dport = 443;
    add({"client banner over IPv6", Prog::kXdp,
         [] { return PacketBuilder().ipv6(kRemote6, kLocal6).tcp(40000, 443).payload(kBanner).build(); },
         NoSetup(), kPass, {e}, Base6({{BW_CNT_banner_client, 1}, {BW_CNT_events, 1}})});
  }
  add({"banner longer than 64 bytes: the first 64 are copied", Prog::kXdp,
       [] { return ServerSays(kLongBanner); }, NoSetup(), kPass, {ServerBannerEv(kLongBanner)},
       ServerHit4()});
  add({"443 -> 443: the server side is reported", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kRemote4, kLocal4).tcp(443, 443).payload(kBanner).build(); },
       NoSetup(), kPass, {ServerBannerEv()}, ServerHit4()});

  // ---- L2 ------------------------------------------------------------------------------------
  add({"one 802.1Q tag", Prog::kXdp, [] { return V4ServerBanner().vlan(100).build(); }, NoSetup(),
       kPass, {ServerBannerEv()}, ServerHit4()});
  add({"two tags: 802.1ad outer, 802.1Q inner", Prog::kXdp,
       [] { return V4ServerBanner().vlan(10, 0x88a8).vlan(20).build(); }, NoSetup(), kPass,
       {ServerBannerEv()}, ServerHit4()});
  add({"three tags (802.1ad, 802.1Q, 802.1Q): the banner inside is found", Prog::kXdp, [] { return TaggedBanner(3); },
       NoSetup(), kPass, {ServerBannerEv()}, ServerHit4()});
  add({"as many tags as walked (BW_VLAN_MAX): the banner inside is found", Prog::kXdp,
       [] { return TaggedBanner(BW_VLAN_MAX); }, NoSetup(), kPass, {ServerBannerEv()},
       ServerHit4()});
  add({"three tags around a blocked source: dropped", Prog::kXdp, [] { return TaggedBanner(3); },
       Prefix("203.0.113.0/24", BW_ACTION_BLOCK, 4), kDrop,
       {[] {
         ExpEvent e{BW_EV_BLOCK, BW_VERDICT_DROP};
         e.list_id = 4, e.list_action = BW_ACTION_BLOCK, e.prefixlen = 24;
         return e;
       }()},
       Base4({{BW_CNT_block_drops, 1}, {BW_CNT_events, 1}})});
  add({"one tag more than walked: counted, passed under unparsed: pass", Prog::kXdp,
       [] { return TaggedBanner(BW_VLAN_MAX + 1); }, NoSetup(), kPass, {},
       {{BW_CNT_packets, 1}, {BW_CNT_vlan_limit, 1}}});
  add({"one tag more than walked under unparsed: alert: counted only (no address to report)",
       Prog::kXdp, [] { return TaggedBanner(BW_VLAN_MAX + 1); }, Unparsed(BW_UNPARSED_ALERT),
       kPass, {}, {{BW_CNT_packets, 1}, {BW_CNT_vlan_limit, 1}}});
  add({"one tag more than walked under unparsed: drop: dropped, whatever the source", Prog::kXdp,
       [] { return TaggedBanner(BW_VLAN_MAX + 1); }, Unparsed(BW_UNPARSED_DROP), kDrop, {},
       {{BW_CNT_packets, 1}, {BW_CNT_vlan_limit, 1}, {BW_CNT_unparsed_drops, 1}}});
  add({"egress, one tag more than walked under unparsed: drop: dropped", Prog::kTc,
       [] {
         PacketBuilder b;
         for (int i = 0; i < BW_VLAN_MAX + 1; ++i) b.vlan(static_cast<uint16_t>(i + 1));
         return b.ipv4(kLocal4, kRemote4).tcp(51000, 443).payload(kBanner).build();
       },
       Unparsed(BW_UNPARSED_DROP), TC_ACT_SHOT, {},
       {{BW_CNT_packets, 1}, {BW_CNT_vlan_limit, 1}, {BW_CNT_unparsed_drops, 1}}});
  add({"ARP is not IP", Prog::kXdp,
       [] { return PacketBuilder().ethertype(0x0806).payload(std::string(28, '\0')).build(); },
       NoSetup(), kPass, {}, {{BW_CNT_packets, 1}, {BW_CNT_non_ip, 1}}});

  // ---- IPv4 options, IPv6 extension headers, TCP options ------------------------------------
  add({"IPv4 with 12 bytes of options", Prog::kXdp,
       [] { return V4ServerBanner().ip_options(12).build(); }, NoSetup(), kPass, {ServerBannerEv()},
       ServerHit4()});
  add({"IPv4 with 40 bytes of options (IHL 15)", Prog::kXdp,
       [] { return V4ServerBanner().ip_options(40).build(); }, NoSetup(), kPass, {ServerBannerEv()},
       ServerHit4()});
  add({"IPv6 hop-by-hop, routing, destination options", Prog::kXdp,
       [] {
         return PacketBuilder().ipv6(kRemote6, kLocal6).v6_ext(kIpprotoHopopts)
             .v6_ext(kIpprotoRouting, 24).v6_ext(kIpprotoDstopts, 16).tcp(443, 40000)
             .payload(kBanner).build();
       },
       NoSetup(), kPass, {ServerBannerEv()}, Base6({{BW_CNT_banner_server, 1}, {BW_CNT_events, 1}})});
  add({"IPv6 with AH", Prog::kXdp,
       [] {
         return PacketBuilder().ipv6(kRemote6, kLocal6).v6_ext(kIpprotoAh, 24).tcp(443, 40000)
             .payload(kBanner).build();
       },
       NoSetup(), kPass, {ServerBannerEv()}, Base6({{BW_CNT_banner_server, 1}, {BW_CNT_events, 1}})});
  add({"IPv6 with seven extension headers: the banner behind them is found", Prog::kXdp,
       [] { return ChainedBanner6(6); }, NoSetup(), kPass, {ServerBannerEv()},
       Base6({{BW_CNT_banner_server, 1}, {BW_CNT_events, 1}})});
  add({"IPv6 with eight extension headers (the bound): the banner is found", Prog::kXdp,
       [] { return ChainedBanner6(BW_V6_EXT_MAX - 1); }, NoSetup(), kPass, {ServerBannerEv()},
       Base6({{BW_CNT_banner_server, 1}, {BW_CNT_events, 1}})});
  add({"IPv6 with nine extension headers under unparsed: pass: counted, not parsed for TCP",
       Prog::kXdp, [] { return ChainedBanner6(BW_V6_EXT_MAX); }, NoSetup(), kPass, {},
       {{BW_CNT_packets, 1}, {BW_CNT_ipv6, 1}, {BW_CNT_v6_ext_limit, 1}}});
  add({"IPv6 with nine extension headers under unparsed: alert: an unparsed event (1000151)",
       Prog::kXdp, [] { return ChainedBanner6(BW_V6_EXT_MAX); }, Unparsed(BW_UNPARSED_ALERT),
       kPass,
       {[] {
         ExpEvent e{BW_EV_UNPARSED, BW_VERDICT_PASS};
         e.src = kRemote6, e.dst = kLocal6;
         return e;
       }()},
       {{BW_CNT_packets, 1}, {BW_CNT_ipv6, 1}, {BW_CNT_v6_ext_limit, 1}, {BW_CNT_events, 1}}});
  add({"IPv6 with nine extension headers under unparsed: drop: dropped", Prog::kXdp,
       [] { return ChainedBanner6(BW_V6_EXT_MAX); }, Unparsed(BW_UNPARSED_DROP), kDrop, {},
       {{BW_CNT_packets, 1}, {BW_CNT_ipv6, 1}, {BW_CNT_v6_ext_limit, 1},
        {BW_CNT_unparsed_drops, 1}}});
  add({"IPv6 with nine extension headers from a safelisted source: passed under unparsed: drop",
       Prog::kXdp, [] { return ChainedBanner6(BW_V6_EXT_MAX); },
       Unparsed(BW_UNPARSED_DROP, Prefix("2001:db8:1::/48", BW_ACTION_SAFELIST, 5)), kPass, {},
       {{BW_CNT_packets, 1}, {BW_CNT_ipv6, 1}, {BW_CNT_v6_ext_limit, 1},
        {BW_CNT_safelist_passes, 1}}});
  add({"IPv6 with nine extension headers from a blocked source is still dropped", Prog::kXdp,
       [] { return ChainedBanner6(BW_V6_EXT_MAX); },
       Unparsed(BW_UNPARSED_ALERT, Prefix("2001:db8:1::/48", BW_ACTION_BLOCK, 3)), kDrop,
       {[] {
         ExpEvent e{BW_EV_BLOCK, BW_VERDICT_DROP};
         e.list_id = 3, e.list_action = BW_ACTION_BLOCK, e.prefixlen = 48;
         return e;
       }()},
       {{BW_CNT_packets, 1}, {BW_CNT_ipv6, 1}, {BW_CNT_v6_ext_limit, 1}, {BW_CNT_block_drops, 1},
        {BW_CNT_events, 1}}});
  add({"TCP with 12 bytes of options", Prog::kXdp,
       [] { return V4ServerBanner().tcp_options(12).build(); }, NoSetup(), kPass,
       {ServerBannerEv()}, ServerHit4()});
  add({"TCP with 40 bytes of options (doff 15)", Prog::kXdp,
       [] { return V4ServerBanner().tcp_options(40).build(); }, NoSetup(), kPass,
       {ServerBannerEv()}, ServerHit4()});

  // ---- what is and is not a banner ------------------------------------------------------------
  add({"payload exactly \"SSH-\"", Prog::kXdp, [] { return ServerSays("SSH-"); }, NoSetup(), kPass,
       {ServerBannerEv("SSH-")}, ServerHit4()});
  add({"\"SSH\" (3 bytes) is not a banner", Prog::kXdp, [] { return ServerSays("SSH"); }, NoSetup(),
       kPass, {}, Base4()});
  add({"\"SSH\" followed by Ethernet padding of '-' is not a banner (length from IP)", Prog::kXdp,
       [] {
         return PacketBuilder().ipv4(kRemote4, kLocal4).tcp(443, 51000).payload("SSH")
             .pad_to(80, '-').build();
       },
       NoSetup(), kPass, {}, Base4()});
  add({"\" SSH-\" (offset 1) is not a banner", Prog::kXdp, [] { return ServerSays(" SSH-2.0-x"); },
       NoSetup(), kPass, {}, Base4()});
  add({"\"ssh-\" (lower case) is not a banner", Prog::kXdp, [] { return ServerSays("ssh-2.0-x"); },
       NoSetup(), kPass, {}, Base4()});
  add({"TLS handshake record on 443", Prog::kXdp, [] { return ServerSays(kTlsHello); }, NoSetup(),
       kPass, {}, Base4()});
  add({"HTTP response on 443", Prog::kXdp,
       [] { return ServerSays("HTTP/1.1 200 OK\r\nServer: SSH-2.0-lookalike\r\n\r\n"); }, NoSetup(),
       kPass, {}, Base4()});
  add({"SSH on port 22 (not watched)", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kRemote4, kLocal4).tcp(22, 51000).payload(kBanner).build(); },
       NoSetup(), kPass, {}, Base4()});
  add({"SSH on 8443 while only 443 is watched", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kRemote4, kLocal4).tcp(8443, 51000).payload(kBanner).build(); },
       NoSetup(), kPass, {}, Base4()});
  add({"SSH on 8443 once 8443 is added at run time", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kRemote4, kLocal4).tcp(8443, 51000).payload(kBanner).build(); },
       [](BpfHarness& h) { h.SetPorts({443, 8443}); }, kPass, {ServerBannerEv()}, ServerHit4()});
  add({"443 no longer watched once ports are {8443}", Prog::kXdp,
       [] { return V4ServerBanner().build(); }, [](BpfHarness& h) { h.SetPorts({8443}); }, kPass,
       {}, Base4()});
  add({"server side off: no event, no count", Prog::kXdp, [] { return V4ServerBanner().build(); },
       [](BpfHarness& h) { h.SetBannerActions(BW_BANNER_OFF, BW_BANNER_ALERT); }, kPass, {},
       Base4()});
  add({"UDP on 443 carrying SSH- is not TCP", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kRemote4, kLocal4).udp(443, 51000).payload(kBanner).build(); },
       NoSetup(), kPass, {}, {{BW_CNT_packets, 1}, {BW_CNT_ipv4, 1}, {BW_CNT_udp, 1}}});
  add({"ICMP", Prog::kXdp, [] { return PacketBuilder().ipv4(kRemote4, kLocal4).icmp().build(); },
       NoSetup(), kPass, {}, {{BW_CNT_packets, 1}, {BW_CNT_ipv4, 1}, {BW_CNT_other_l4, 1}}});

  // ---- fragments ------------------------------------------------------------------------------
  add({"IPv4 first fragment (MF, offset 0) carrying the banner", Prog::kXdp,
       [] { return V4ServerBanner().fragment(0, true).build(); }, NoSetup(), kPass,
       {ServerBannerEv()}, ServerHit4()});
  // A later fragment is checked only with its first fragment's record (tests/bpf/sequence_test.cpp).
  add({"IPv4 later TCP fragment without its first: address check only, counted unmatched", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kRemote4, kLocal4).l4proto(6).payload(kBanner).fragment(185, false).build(); },
       NoSetup(), kPass, {},
       {{BW_CNT_packets, 1}, {BW_CNT_ipv4, 1}, {BW_CNT_fragments, 1}, {BW_CNT_frag_unmatched, 1}}});
  add({"IPv4 later fragment from a blocked source is dropped", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kSeedHost, kLocal4).l4proto(6).payload(kBanner).fragment(185, false).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_BLOCK, 2), kDrop,
       {[] {
         ExpEvent e{BW_EV_BLOCK, BW_VERDICT_DROP};
         e.list_id = 2, e.list_action = BW_ACTION_BLOCK, e.prefixlen = 24, e.src = kSeedHost;
         return e;
       }()},
       {{BW_CNT_packets, 1}, {BW_CNT_ipv4, 1}, {BW_CNT_fragments, 1}, {BW_CNT_block_drops, 1},
        {BW_CNT_events, 1}}});
  add({"IPv6 first fragment carrying the banner", Prog::kXdp,
       [] { return PacketBuilder().ipv6(kRemote6, kLocal6).fragment(0, true).tcp(443, 40000).payload(kBanner).build(); },
       NoSetup(), kPass, {ServerBannerEv()}, Base6({{BW_CNT_banner_server, 1}, {BW_CNT_events, 1}})});
  add({"IPv6 later TCP fragment without its first: address check only, counted unmatched", Prog::kXdp,
       [] { return PacketBuilder().ipv6(kRemote6, kLocal6).fragment(100, false).l4proto(6).payload(kBanner).build(); },
       NoSetup(), kPass, {},
       {{BW_CNT_packets, 1}, {BW_CNT_ipv6, 1}, {BW_CNT_fragments, 1}, {BW_CNT_frag_unmatched, 1}}});
  add({"IPv4 later UDP fragment: not counted unmatched", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kRemote4, kLocal4).l4proto(17).payload(kBanner).fragment(185, false).build(); },
       NoSetup(), kPass, {}, {{BW_CNT_packets, 1}, {BW_CNT_ipv4, 1}, {BW_CNT_fragments, 1}}});

  // ---- malformed ---------------------------------------------------------------------------------
  Counts bad{{BW_CNT_packets, 1}, {BW_CNT_malformed, 1}};
  add({"IHL 4", Prog::kXdp, [] { return V4ServerBanner().ihl(4).build(); }, NoSetup(), kPass, {}, bad});
  add({"IHL 15 with a 20-byte header and a short frame", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kRemote4, kLocal4).ihl(15).l4proto(6).tot_len(60).build(); },
       NoSetup(), kPass, {}, bad});
  add({"IPv4 total length past the frame", Prog::kXdp,
       [] { return V4ServerBanner().tot_len(1400).build(); }, NoSetup(), kPass, {}, bad});
  add({"IPv4 total length shorter than the header", Prog::kXdp,
       [] { return V4ServerBanner().tot_len(12).build(); }, NoSetup(), kPass, {}, bad});
  add({"IP version 5 in an IPv4 EtherType", Prog::kXdp,
       [] { return V4ServerBanner().version(5).build(); }, NoSetup(), kPass, {}, bad});
  add({"IPv6 payload length past the frame", Prog::kXdp,
       [] { return PacketBuilder().ipv6(kRemote6, kLocal6).tcp(443, 40000).payload(kBanner).tot_len(2000).build(); },
       NoSetup(), kPass, {}, bad});
  add({"frame cut inside the IPv4 header", Prog::kXdp,
       [] { return V4ServerBanner().truncate(14 + 12).build(); }, NoSetup(), kPass, {}, bad});
  add({"an IPv4 EtherType and nothing after the Ethernet header", Prog::kXdp,
       [] { return V4ServerBanner().truncate(14).build(); }, NoSetup(), kPass, {}, bad});
  add({"frame cut inside a VLAN tag", Prog::kXdp,
       [] { return V4ServerBanner().vlan(5).truncate(15).build(); }, NoSetup(), kPass, {}, bad});
  add({"doff 4", Prog::kXdp, [] { return V4ServerBanner().doff(4).build(); }, NoSetup(), kPass, {},
       Base4({{BW_CNT_malformed, 1}})});
  add({"doff 15 past the datagram", Prog::kXdp, [] { return V4ServerBanner().payload("SSH-2.0").doff(15).build(); },
       NoSetup(), kPass, {}, Base4({{BW_CNT_malformed, 1}})});
  add({"TCP header cut by the IP length", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kRemote4, kLocal4).tcp(443, 51000).payload(kBanner).tot_len(20 + 10).build(); },
       NoSetup(), kPass, {}, Base4({{BW_CNT_malformed, 1}})});
  add({"malformed TCP from a blocked source is still dropped (the address is sound)", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kSeedHost, kLocal4).tcp(443, 51000).payload(kBanner).doff(3).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_BLOCK, 2), kDrop,
       {[] {
         ExpEvent e{BW_EV_BLOCK, BW_VERDICT_DROP};
         e.list_id = 2, e.list_action = BW_ACTION_BLOCK, e.prefixlen = 24;
         return e;
       }()},
       Base4({{BW_CNT_malformed, 1}, {BW_CNT_block_drops, 1}, {BW_CNT_events, 1}})});

  // ---- watchlists: block ----------------------------------------------------------------------
  auto block_ev = [](uint32_t list, uint8_t plen, const char* src) {
    ExpEvent e{BW_EV_BLOCK, BW_VERDICT_DROP};
    e.list_id = list, e.list_action = BW_ACTION_BLOCK, e.prefixlen = plen, e.src = src;
    return e;
  };
  Counts blocked4 = Base4({{BW_CNT_block_drops, 1}, {BW_CNT_events, 1}});
  Counts blocked6 = Base6({{BW_CNT_block_drops, 1}, {BW_CNT_events, 1}});
  add({"blocked /24 (the seed's subnet): dropped with an event", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kSeedHost, kLocal4).tcp(443, 51000, kSyn | kAck).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_BLOCK, 2), kDrop, {block_ev(2, 24, kSeedHost)}, blocked4,
       1, [](BpfHarness& h) {
         bw_lpm_v4_key k{24, {37, 9, 53, 0}};
         auto v = h.maps().watch_v4.Lookup(k);
         REQUIRE(v.ok());
         REQUIRE(v->has_value());
         CHECK((*v)->drops == 1u);
       }});
  add({"blocked /32", Prog::kXdp,
       [] { return PacketBuilder().ipv4("37.9.53.97", kLocal4).udp(53, 53).build(); },
       Prefix("37.9.53.97/32", BW_ACTION_BLOCK, 4), kDrop, {block_ev(4, 32, "37.9.53.97")},
       {{BW_CNT_packets, 1}, {BW_CNT_ipv4, 1}, {BW_CNT_udp, 1}, {BW_CNT_block_drops, 1},
        {BW_CNT_events, 1}}});
  add({"blocked /8", Prog::kXdp, [] { return ServerSays("x"); },
       Prefix("203.0.0.0/8", BW_ACTION_BLOCK, 5), kDrop, {block_ev(5, 8, kRemote4)}, blocked4});
  add({"a neighbour outside the blocked /24 passes", Prog::kXdp,
       [] { return PacketBuilder().ipv4("37.9.54.1", kLocal4).tcp(443, 51000).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_BLOCK, 2), kPass, {}, Base4()});
  add({"blocked IPv6 /32", Prog::kXdp,
       [] { return PacketBuilder().ipv6(kRemote6, kLocal6).tcp(443, 40000).build(); },
       Prefix("2001:db8::/32", BW_ACTION_BLOCK, 6), kDrop, {block_ev(6, 32, kRemote6)}, blocked6});
  add({"blocked IPv6 /128", Prog::kXdp,
       [] { return PacketBuilder().ipv6(kRemote6, kLocal6).tcp(443, 40000).build(); },
       Prefix("2001:db8:1::10/128", BW_ACTION_BLOCK, 6), kDrop, {block_ev(6, 128, kRemote6)},
       blocked6});
  add({"IPv6 neighbour outside a blocked /64 passes", Prog::kXdp,
       [] { return PacketBuilder().ipv6("2001:db8:1:1::10", kLocal6).tcp(443, 40000).build(); },
       Prefix("2001:db8:1::/64", BW_ACTION_BLOCK, 6), kPass, {}, Base6()});
  add({"IPv4-mapped IPv6 source is looked up as IPv4", Prog::kXdp,
       [] { return PacketBuilder().ipv6("::ffff:37.9.53.12", "::ffff:198.51.100.20").tcp(443, 40000).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_BLOCK, 2), kDrop, {block_ev(2, 24, "::ffff:37.9.53.12")},
       blocked6});
  add({"block events are rate-limited per source: 5 packets, 1 event, 4 suppressed", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kSeedHost, kLocal4).tcp(443, 51000).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_BLOCK, 2), kDrop, {block_ev(2, 24, kSeedHost)},
       {{BW_CNT_packets, 5}, {BW_CNT_ipv4, 5}, {BW_CNT_tcp, 5}, {BW_CNT_block_drops, 5},
        {BW_CNT_events, 1}, {BW_CNT_events_suppressed, 4}},
       5});

  // ---- watch ------------------------------------------------------------------------------------
  auto watch_ev = [](uint32_t list, uint8_t plen) {
    ExpEvent e{BW_EV_WATCH, BW_VERDICT_PASS};
    e.list_id = list, e.list_action = BW_ACTION_WATCH, e.prefixlen = plen;
    return e;
  };
  add({"watched /24: a SYN passes with an event and a hit", Prog::kXdp,
       [] { return PacketBuilder().ipv4("37.9.53.40", kLocal4).tcp(51000, 22, kSyn).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_WATCH, 1), kPass, {watch_ev(1, 24)},
       Base4({{BW_CNT_watch_hits, 1}, {BW_CNT_events, 1}}), 1, [](BpfHarness& h) {
         bw_lpm_v4_key k{24, {37, 9, 53, 0}};
         auto v = h.maps().watch_v4.Lookup(k);
         REQUIRE(v.ok());
         REQUIRE(v->has_value());
         CHECK((*v)->hits == 1u);
         CHECK((*v)->drops == 0u);
       }});
  add({"watched /24: a SYN-ACK (our outbound connection answered) is a hit", Prog::kXdp,
       [] { return PacketBuilder().ipv4("37.9.53.40", kLocal4).tcp(443, 51000, kSyn | kAck).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_WATCH, 1), kPass, {watch_ev(1, 24)},
       Base4({{BW_CNT_watch_hits, 1}, {BW_CNT_events, 1}})});
  // 20,000 SYNs from one watched source once made 20,000 EVE lines in half a second.
  add({"watch events are rate-limited per source: 5 SYNs, 5 hits, 1 event, 4 suppressed",
       Prog::kXdp,
       [] { return PacketBuilder().ipv4("37.9.53.40", kLocal4).tcp(51000, 22, kSyn).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_WATCH, 1), kPass, {watch_ev(1, 24)},
       {{BW_CNT_packets, 5}, {BW_CNT_ipv4, 5}, {BW_CNT_tcp, 5}, {BW_CNT_watch_hits, 5},
        {BW_CNT_events, 1}, {BW_CNT_events_suppressed, 4}},
       5});
  add({"watched /24: a mid-flow ACK is not a connection start", Prog::kXdp,
       [] { return PacketBuilder().ipv4("37.9.53.40", kLocal4).tcp(443, 51000, kAck).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_WATCH, 1), kPass, {}, Base4()});
  add({"watched IPv6 /48 SYN", Prog::kXdp,
       [] { return PacketBuilder().ipv6(kRemote6, kLocal6).tcp(40000, 22, kSyn).build(); },
       Prefix("2001:db8:1::/48", BW_ACTION_WATCH, 9), kPass, {watch_ev(9, 48)},
       Base6({{BW_CNT_watch_hits, 1}, {BW_CNT_events, 1}})});
  {
    ExpEvent e = ServerBannerEv();
    e.list_id = 1, e.list_action = BW_ACTION_WATCH, e.prefixlen = 24, e.src = kSeedHost;
    add({"banner from a watched host carries its list", Prog::kXdp,
         [] { return PacketBuilder().ipv4(kSeedHost, kLocal4).tcp(443, 51000).payload(kBanner).build(); },
         Prefix("37.9.53.0/24", BW_ACTION_WATCH, 1), kPass, {e}, ServerHit4()});
  }

  // ---- precedence -------------------------------------------------------------------------------
  add({"safelisted /32 inside a blocked /16 passes, no banner alert", Prog::kXdp,
       [] { return PacketBuilder().ipv4("37.9.53.12", kLocal4).tcp(443, 51000).payload(kBanner).build(); },
       Prefixes({{"37.9.0.0/16", BW_ACTION_BLOCK, 2}, {"37.9.53.12/32", BW_ACTION_SAFELIST, 3}}),
       kPass, {}, Base4({{BW_CNT_safelist_passes, 1}})});
  add({"the rest of that blocked /16 is dropped", Prog::kXdp,
       [] { return PacketBuilder().ipv4("37.9.53.13", kLocal4).tcp(443, 51000).build(); },
       Prefixes({{"37.9.0.0/16", BW_ACTION_BLOCK, 2}, {"37.9.53.12/32", BW_ACTION_SAFELIST, 3}}),
       kDrop, {block_ev(2, 16, "37.9.53.13")}, blocked4});
  add({"safelisted /8 around a blocked /24: the /24's stored value decides (block)", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kSeedHost, kLocal4).tcp(443, 51000).build(); },
       Prefixes({{"37.0.0.0/8", BW_ACTION_SAFELIST, 3}, {"37.9.53.0/24", BW_ACTION_BLOCK, 2}}),
       kDrop, {block_ev(2, 24, kSeedHost)}, blocked4});
  add({"a watched /32 inside a blocked /16, stored as block by the daemon, is blocked",
       Prog::kXdp, [] { return PacketBuilder().ipv4(kSeedHost, kLocal4).tcp(443, 51000).build(); },
       Prefixes({{"37.9.0.0/16", BW_ACTION_BLOCK, 2}, {"37.9.53.12/32", BW_ACTION_BLOCK, 1}}),
       kDrop, {block_ev(1, 32, kSeedHost)}, blocked4});
  {
    ExpEvent e{BW_EV_BLOCK, BW_VERDICT_DROP};
    e.list_id = 2, e.list_action = BW_ACTION_BLOCK | BW_ACTION_WATCH, e.prefixlen = 24;
    add({"action bits block|watch: block wins", Prog::kXdp,
         [] { return PacketBuilder().ipv4(kSeedHost, kLocal4).tcp(443, 51000, kSyn).build(); },
         Prefix("37.9.53.0/24", BW_ACTION_BLOCK | BW_ACTION_WATCH, 2), kDrop, {e}, blocked4});
  }
  add({"action bits safelist|block: safelist wins", Prog::kXdp,
       [] { return PacketBuilder().ipv4(kSeedHost, kLocal4).tcp(443, 51000).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_SAFELIST | BW_ACTION_BLOCK, 2), kPass, {},
       Base4({{BW_CNT_safelist_passes, 1}})});
  add({"IPv6 safelisted /64 inside a blocked /32", Prog::kXdp,
       [] { return PacketBuilder().ipv6(kRemote6, kLocal6).tcp(443, 40000).build(); },
       Prefixes({{"2001:db8::/32", BW_ACTION_BLOCK, 2}, {"2001:db8:1::/64", BW_ACTION_SAFELIST, 3}}),
       kPass, {}, Base6({{BW_CNT_safelist_passes, 1}})});

  // ---- banner drop and the rest of the flow -------------------------------------------------------
  auto drop_server = [](BpfHarness& h) { h.SetBannerActions(BW_BANNER_DROP, BW_BANNER_ALERT); };
  {
    ExpEvent e = ServerBannerEv();
    e.verdict = BW_VERDICT_DROP;
    add({"server banner with action drop: dropped, flow remembered", Prog::kXdp,
         [] { return V4ServerBanner().build(); }, drop_server, kDrop, {e},
         Base4({{BW_CNT_banner_server, 1}, {BW_CNT_banner_drops, 1}, {BW_CNT_events, 1}}), 1,
         [](BpfHarness& h) {
           auto d = h.maps().flows.Dump();
           REQUIRE(d.ok());
           REQUIRE(d->size() == 1u);
           // The canonical key puts the endpoint that sorts lower (network order) first.
           const bw_flow_key& fk = (*d)[0].first;
           CHECK(AddrStr(fk.a_addr, BW_FAMILY_V4) == kLocal4);
           CHECK(AddrStr(fk.b_addr, BW_FAMILY_V4) == kRemote4);
           CHECK(ntohs(fk.a_port) == 51000);
           CHECK(ntohs(fk.b_port) == 443);
           // The follow-up packets of that flow, both directions, are dropped; others are not.
           auto r = h.RunXdp(PacketBuilder().ipv4(kRemote4, kLocal4).tcp(443, 51000, kAck).payload("more").build());
           CHECK(r.retval == kDrop);
           CHECK(r.events.empty());
           auto t = h.RunTc(PacketBuilder().ipv4(kLocal4, kRemote4).tcp(51000, 443, kAck).build());
           CHECK(t.retval == uint32_t(TC_ACT_SHOT));
           auto other = h.RunXdp(PacketBuilder().ipv4(kRemote4, kLocal4).tcp(443, 51001, kAck).payload("hello").build());
           CHECK(other.retval == kPass);
           CHECK(h.Counters(BW_DIR_INGRESS)[BW_CNT_flow_drops] == 1u);
           CHECK(h.Counters(BW_DIR_EGRESS)[BW_CNT_flow_drops] == 1u);
           auto d2 = h.maps().flows.Dump();
           REQUIRE(d2.ok());
           REQUIRE(d2->size() == 1u);
           CHECK((*d2)[0].second.packets == 2u);
         }});
  }
  {
    ExpEvent e = ClientBannerEv();
    e.verdict = BW_VERDICT_DROP;
    add({"client banner with action drop", Prog::kXdp,
         [] { return PacketBuilder().ipv4(kRemote4, kLocal4).tcp(51000, 443).payload(kBanner).build(); },
         [](BpfHarness& h) { h.SetBannerActions(BW_BANNER_ALERT, BW_BANNER_DROP); }, kDrop, {e},
         Base4({{BW_CNT_banner_client, 1}, {BW_CNT_banner_drops, 1}, {BW_CNT_events, 1}})});
  }
  add({"server drop does not touch a TLS flow on 443", Prog::kXdp,
       [] { return ServerSays(kTlsHello); }, drop_server, kPass, {}, Base4()});

  // ---- TC egress ----------------------------------------------------------------------------------
  {
    ExpEvent e = ClientBannerEv();
    e.src = kLocal4, e.dst = kRemote4, e.sport = 51000, e.dport = 443;
    add({"egress: this host's client speaks SSH to :443", Prog::kTc,
         [] { return PacketBuilder().ipv4(kLocal4, kRemote4).tcp(51000, 443).payload(kBanner).build(); },
         NoSetup(), TC_ACT_OK, {e}, Base4({{BW_CNT_banner_client, 1}, {BW_CNT_events, 1}})});
  }
  {
    ExpEvent e = ServerBannerEv();
    e.src = kLocal6, e.dst = kRemote6;
    add({"egress: this host's server answers SSH from :443 (IPv6)", Prog::kTc,
         [] { return PacketBuilder().ipv6(kLocal6, kRemote6).tcp(443, 40000).payload(kBanner).build(); },
         NoSetup(), TC_ACT_OK, {e}, Base6({{BW_CNT_banner_server, 1}, {BW_CNT_events, 1}})});
  }
  add({"egress to a blocked subnet is shot", Prog::kTc,
       [] { return PacketBuilder().ipv4(kLocal4, kSeedHost).tcp(51000, 443, kSyn).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_BLOCK, 2), TC_ACT_SHOT,
       {[] {
         ExpEvent e{BW_EV_BLOCK, BW_VERDICT_DROP};
         e.list_id = 2, e.list_action = BW_ACTION_BLOCK, e.prefixlen = 24, e.dst = kSeedHost;
         return e;
       }()},
       blocked4});
  add({"egress: the destination decides, not the source", Prog::kTc,
       [] { return PacketBuilder().ipv4(kSeedHost, kRemote4).tcp(443, 51000).build(); },
       Prefix("37.9.53.0/24", BW_ACTION_BLOCK, 2), TC_ACT_OK, {}, Base4()});
  add({"egress SYN to a watched IPv6 host", Prog::kTc,
       [] { return PacketBuilder().ipv6(kLocal6, kRemote6).tcp(40000, 443, kSyn).build(); },
       Prefix("2001:db8:1::/48", BW_ACTION_WATCH, 9), TC_ACT_OK, {watch_ev(9, 48)},
       Base6({{BW_CNT_watch_hits, 1}, {BW_CNT_events, 1}})});
  add({"egress safelist inside block", Prog::kTc,
       [] { return PacketBuilder().ipv4(kLocal4, kSeedHost).tcp(51000, 443, kSyn).build(); },
       Prefixes({{"37.9.0.0/16", BW_ACTION_BLOCK, 2}, {"37.9.53.12/32", BW_ACTION_SAFELIST, 3}}),
       TC_ACT_OK, {}, Base4({{BW_CNT_safelist_passes, 1}})});
  add({"egress with a VLAN tag in the frame", Prog::kTc,
       [] { return PacketBuilder().vlan(42).ipv4(kLocal4, kRemote4).tcp(51000, 443).payload(kBanner).build(); },
       NoSetup(), TC_ACT_OK, {ClientBannerEv()}, Base4({{BW_CNT_banner_client, 1}, {BW_CNT_events, 1}})});
  add({"egress malformed IHL", Prog::kTc,
       [] { return PacketBuilder().ipv4(kLocal4, kRemote4).ihl(3).tcp(51000, 443).build(); },
       NoSetup(), TC_ACT_OK, {}, {{BW_CNT_packets, 1}, {BW_CNT_malformed, 1}}});
  return rows;
}

TEST_CASE("fixture table: XDP ingress and TC egress against the loaded object") {
  // One load for the whole table; each row starts from Reset().
  BpfHarness h;
  const std::vector<Row> rows = Rows();
  for (const Row& row : rows) {
    INFO("row: " << row.what);
    h.Reset();
    row.setup(h);
    Bytes frame = row.frame();
    std::vector<bw_event> events;
    uint32_t verdict = 0;
    for (int i = 0; i < row.repeat; ++i) {
      RunResult r = row.prog == Prog::kXdp ? h.RunXdp(frame) : h.RunTc(frame);
      verdict = r.retval;
      events.insert(events.end(), r.events.begin(), r.events.end());
    }
    CHECK(verdict == row.verdict);
    CHECK(events.size() == row.events.size());
    for (size_t i = 0; i < events.size() && i < row.events.size(); ++i)
      CheckEvent(events[i], row.events[i], row.prog);

    bw_direction dir = row.prog == Prog::kXdp ? BW_DIR_INGRESS : BW_DIR_EGRESS;
    CounterArray got = h.Counters(dir);
    CounterArray other = h.Counters(dir == BW_DIR_INGRESS ? BW_DIR_EGRESS : BW_DIR_INGRESS);
    for (int c = 0; c < BW_CNT__MAX; ++c) {
      auto it = row.counts.find(static_cast<bw_counter>(c));
      uint64_t want = it == row.counts.end() ? 0 : it->second;
      INFO("counter " << kCounterNames[c]);
      CHECK(got[c] == want);
      CHECK(other[c] == 0u);
    }
    if (row.check) {
      REQUIRE(h.maps().ZeroCounters().ok());
      row.check(h);
    }
  }
  // Every row ran (a guard against a table that silently shrinks).
  CHECK(rows.size() >= 80u);
}

TEST_CASE("a full ring buffer loses events, never verdicts, and the lost counter is exact") {
  LoadOptions small;
  small.events_bytes = 4096;  // the smallest ring: one page
  BpfHarness h(small);
  h.Reset();
  h.SetBannerActions(BW_BANNER_DROP, BW_BANNER_ALERT);
  // Each record takes its 8-byte header plus the event, rounded to 8; the kernel refuses a
  // reservation once producer - consumer would exceed the ring's mask.
  const size_t rec = (sizeof(bw_event) + 8 + 7) / 8 * 8;
  const size_t fits = 4096 / rec;
  const int sent = static_cast<int>(fits) + 13;
  for (int i = 0; i < sent; ++i) {
    // A new flow each time, so each one is a banner drop (not a flow drop).
    Bytes f = PacketBuilder().ipv4(kRemote4, kLocal4).tcp(443, 20000 + i).payload(kBanner).build();
    CHECK(h.RunXdpNoDrain(f) == kDrop);
  }
  std::vector<bw_event> got = h.Drain();
  CounterArray c = h.Counters(BW_DIR_INGRESS);
  CHECK(got.size() == fits);
  CHECK(c[BW_CNT_events] == fits);
  CHECK(c[BW_CNT_events_lost] == sent - fits);
  CHECK(c[BW_CNT_banner_drops] == uint64_t(sent));
  CHECK(c[BW_CNT_banner_server] == uint64_t(sent));
  // Drained: room again.
  auto r = h.RunXdp(PacketBuilder().ipv4(kRemote4, kLocal4).tcp(443, 19999).payload(kBanner).build());
  CHECK(r.retval == kDrop);
  CHECK(r.events.size() == 1u);
  // Full again, then blocked traffic: still dropped, every lost block event counted.
  REQUIRE(h.maps().ZeroCounters().ok());
  for (size_t i = 0; i < fits; ++i)
    h.RunXdpNoDrain(PacketBuilder().ipv4(kRemote4, kLocal4).tcp(443, 40000 + i).payload(kBanner).build());
  h.AddPrefix("37.9.53.0/24", BW_ACTION_BLOCK, 2);
  for (int i = 0; i < 3; ++i) {
    std::string src = "37.9.53." + std::to_string(100 + i);
    CHECK(h.RunXdpNoDrain(PacketBuilder().ipv4(src, kLocal4).tcp(443, 1).build()) == kDrop);
  }
  c = h.Counters(BW_DIR_INGRESS);
  CHECK(c[BW_CNT_events] == fits);
  CHECK(c[BW_CNT_block_drops] == 3u);
  CHECK(c[BW_CNT_events_lost] == 3u);
  CHECK(h.Drain().size() == fits);
  h.Drain();
}

TEST_CASE("the block-event budget caps events per second and CPU, never drops, and refills") {
  BpfHarness h;
  h.Reset();
  h.AddPrefix("37.9.53.0/24", BW_ACTION_BLOCK, 2);
  auto cfg = h.maps().ReadConfig();
  REQUIRE(cfg.ok());
  cfg->block_event_budget = 3;
  REQUIRE(h.maps().WriteConfig(*cfg).ok());
  auto flood = [&](int first, int n) {
    std::vector<bw_event> evs;
    for (int i = first; i < first + n; ++i) {
      Bytes f = PacketBuilder().ipv4("37.9.53." + std::to_string(i), kLocal4).tcp(443, 1).build();
      auto r = h.RunXdp(f);
      CHECK(r.retval == kDrop);
      evs.insert(evs.end(), r.events.begin(), r.events.end());
    }
    return evs;
  };
  // Eight new sources in one second: three events, five over budget, eight drops.
  std::vector<bw_event> got = flood(10, 8);
  CounterArray c = h.Counters(BW_DIR_INGRESS);
  REQUIRE(got.size() == 3u);
  CHECK(got[0].saddr[3] == 10);
  CHECK(got[2].saddr[3] == 12);
  CHECK(c[BW_CNT_block_drops] == 8u);
  CHECK(c[BW_CNT_events] == 3u);
  CHECK(c[BW_CNT_events_budget] == 5u);
  CHECK(c[BW_CNT_events_suppressed] == 0u);
  // A source refused by the budget was not marked as reported; one that was reported is held by
  // the per-source interval (suppressed, not over budget).
  flood(10, 1);
  c = h.Counters(BW_DIR_INGRESS);
  CHECK(c[BW_CNT_events_suppressed] == 1u);
  CHECK(c[BW_CNT_events_budget] == 5u);
  // The next second (the coarse clock ticks per jiffy): the budget is there again, and a source
  // refused before is reported now.
  usleep(1100 * 1000);
  got = flood(15, 4);
  c = h.Counters(BW_DIR_INGRESS);
  REQUIRE(got.size() == 3u);
  CHECK(got[0].saddr[3] == 15);
  CHECK(c[BW_CNT_events_budget] == 6u);
  // Budget 0: no cap.
  cfg->block_event_budget = 0;
  REQUIRE(h.maps().WriteConfig(*cfg).ok());
  got = flood(100, 20);
  CHECK(got.size() == 20u);
}

}  // namespace
}  // namespace bw::test
