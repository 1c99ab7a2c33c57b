// Beyond a per-packet match: flows whose banner is split across segments, preceded by other
// lines (RFC 4253 4.2) in one segment or several, hidden from a per-segment match by an overlap
// or an urgent byte the receiver takes out, or carried through an HTTP CONNECT tunnel, and the
// non-TLS flag. Each row
// is a sequence of frames, every one with its expected verdict and events; the state the kernel
// keeps between frames (bw_partial, bw_stream, bw_tunnels) is what is under test.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <catch2/catch.hpp>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "lib/bpf_harness.hpp"
#include "lib/packet.hpp"

namespace bw::test {
namespace {

constexpr const char* kServer = "203.0.113.10";
constexpr const char* kClient = "198.51.100.20";
constexpr const char* kProxy = "203.0.113.80";
constexpr uint32_t kIsn = 1000;
const std::string kBanner = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";

struct Want {
  uint8_t kind;
  uint8_t match = BW_MATCH_DIRECT;
  std::string banner;  // exact bytes in the event
  uint8_t verdict = BW_VERDICT_PASS;
};

struct Step {
  bool egress = false;  // TC instead of XDP
  Bytes frame;
  uint32_t verdict = XDP_PASS;
  std::vector<Want> events;
};

struct Sequence {
  const char* what;
  std::function<void(BpfHarness&)> setup;
  std::vector<Step> steps;
  // enum bw_feature bits the sequence exercises. An object variant without them (the core one)
  // must pass every frame and report nothing: the detection is off, not half there.
  uint32_t needs = 0;
};

// A segment from the server's port 443 to the client, at `seq`.
Bytes FromServer(uint32_t seq, const std::string& payload, uint8_t flags = kAck | kPsh) {
  return PacketBuilder().ipv4(kServer, kClient).tcp(443, 51000, flags).seq(seq).payload(payload).build();
}
// ... with URG set and urgent pointer `urg`.
Bytes FromServerUrgent(uint32_t seq, const std::string& payload, uint16_t urg) {
  return PacketBuilder().ipv4(kServer, kClient).tcp(443, 51000).urg(urg).seq(seq).payload(payload).build();
}
Bytes FromServer6(uint32_t seq, const std::string& payload) {
  return PacketBuilder().ipv6("2001:db8::10", "2001:db8::20").tcp(443, 51000).seq(seq).payload(payload).build();
}
Bytes SynAck6(uint32_t isn) {
  return PacketBuilder().ipv6("2001:db8::10", "2001:db8::20").tcp(443, 51000, kSyn | kAck).seq(isn).build();
}
// A segment from the server as two IP fragments: the TCP header (24 bytes with options) and
// `head` in the first, `rest` in the second, which is sent on its own by FragRest.
Bytes FragFirst(bool v6, uint32_t seq, const std::string& head) {
  PacketBuilder b;
  if (v6) b.ipv6("2001:db8::10", "2001:db8::20"); else b.ipv4(kServer, kClient);
  return b.tcp(443, 51000).seq(seq).tcp_options(4).fragment(0, true).payload(head).build();
}
Bytes FragRest(bool v6, size_t head_len, const std::string& rest) {
  PacketBuilder b;
  if (v6) b.ipv6("2001:db8::10", "2001:db8::20"); else b.ipv4(kServer, kClient);
  return b.fragment(static_cast<uint16_t>((24 + head_len) / 8), false).l4proto(6).payload(rest).build();
}
Bytes ToServer(uint32_t seq, const std::string& payload) {
  return PacketBuilder().ipv4(kClient, kServer).tcp(51000, 443).seq(seq).payload(payload).build();
}
Bytes SynAck(uint32_t isn) {
  return PacketBuilder().ipv4(kServer, kClient).tcp(443, 51000, kSyn | kAck).seq(isn).build();
}
Bytes FromProxy(uint32_t seq, const std::string& payload) {
  return PacketBuilder().ipv4(kProxy, kClient).tcp(8888, 51000).seq(seq).payload(payload).build();
}
Bytes ToProxy(const std::string& payload) {
  return PacketBuilder().ipv4(kClient, kProxy).tcp(51000, 8888).payload(payload).build();
}

Want Banner(uint8_t match, const std::string& text, uint8_t verdict = BW_VERDICT_PASS) {
  return Want{BW_EV_BANNER, match, text.substr(0, BW_BANNER_MAX), verdict};
}

std::vector<Sequence> Sequences() {
  auto defaults = [](BpfHarness&) {};
  auto proxy = [](BpfHarness& h) { h.SetPorts({443}, {8888}); };
  auto non_tls = [](BpfHarness& h) {
    h.SetBannerActions(BW_BANNER_ALERT, BW_BANNER_ALERT, BW_CFG_NON_TLS);
  };
  const std::string tail = kBanner.substr(2);
  return {
      {"split: \"SS\" then \"H-2.0-...\" alerts like the whole banner", defaults,
       {{false, FromServer(kIsn + 1, "SS")},
        {false, FromServer(kIsn + 3, tail), XDP_PASS, {Banner(BW_MATCH_SPLIT, kBanner)}}}},
      {"split: one byte per segment", defaults,
       {{false, FromServer(kIsn + 1, "S")},
        {false, FromServer(kIsn + 2, "S")},
        {false, FromServer(kIsn + 3, "H")},
        {false, FromServer(kIsn + 4, kBanner.substr(3)), XDP_PASS, {Banner(BW_MATCH_SPLIT, kBanner)}}}},
      {"split: \"SSH\" then \"-\" alone", defaults,
       {{false, FromServer(kIsn + 1, "SSH")},
        {false, FromServer(kIsn + 4, "-"), XDP_PASS, {Banner(BW_MATCH_SPLIT, "SSH-")}}}},
      {"split: a client's banner toward :443", defaults,
       {{false, ToServer(7, "SS")},
        {false, ToServer(9, tail), XDP_PASS,
         {Want{BW_EV_BANNER, BW_MATCH_SPLIT, kBanner.substr(0, 64)}}}}},
      {"split: a gap in sequence numbers is not a continuation", defaults,
       {{false, FromServer(kIsn + 1, "SS")}, {false, FromServer(kIsn + 10, tail)}}},
      {"split: a wrong continuation clears the state", defaults,
       {{false, FromServer(kIsn + 1, "SS")},
        {false, FromServer(kIsn + 3, "XX")},
        {false, FromServer(kIsn + 5, "H-2.0")}}},
      {"split with server drop: the completing segment and the rest of the flow drop",
       [](BpfHarness& h) { h.SetBannerActions(BW_BANNER_DROP, BW_BANNER_ALERT); },
       {{false, FromServer(kIsn + 1, "SS")},
        {false, FromServer(kIsn + 3, tail), XDP_DROP,
         {Banner(BW_MATCH_SPLIT, kBanner, BW_VERDICT_DROP)}},
        {false, FromServer(kIsn + 3 + tail.size(), "more"), XDP_DROP}}},
      {"lines before the version line in the server's first payload (RFC 4253 4.2)", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, "Welcome to the service\r\nplease wait\r\n" + kBanner), XDP_PASS,
         {Banner(BW_MATCH_PRELINES, kBanner)}}},
       BW_FEAT_PRELINES},
      {"lines before the version line, but not the first payload: no alert", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, "\x17\x03\x03\x00\x10 tls record.........")},
        {false, FromServer(kIsn + 30, "hello\r\n" + kBanner)}}},
      {"an HTTP response whose body has a line starting SSH-: no alert", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n" + kBanner)}}},
      {"a line longer than 255 bytes before it: not a version exchange", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, std::string(300, 'x') + "\r\n" + kBanner)}}},
      {"non-TLS flag: a first payload that is neither TLS nor HTTP (sid 1000150)", non_tls,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, "+OK POP3 ready\r\n"), XDP_PASS,
         {Want{BW_EV_NON_TLS, 0, "+OK POP3 ready\r\n"}}},
        {false, FromServer(kIsn + 17, "+OK more")}}},
      {"non-TLS flag: TLS and HTTP first payloads are quiet", non_tls,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, "\x16\x03\x03\x00\x40 server hello")},
        {false, SynAck(kIsn + 5000)},
        {false, FromServer(kIsn + 5001, "HTTP/1.1 400 Bad Request\r\n\r\n")}}},
      {"non-TLS flag off by default: nothing", defaults,
       {{false, SynAck(kIsn)}, {false, FromServer(kIsn + 1, "+OK POP3 ready\r\n")}}},
      // Evasions the receiver undoes (issue 14): each delivers kBanner to the client application.
      {"overlap: a segment one byte before the stream's first, \"Z\" + banner", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn, "Z" + kBanner), XDP_PASS, {Banner(BW_MATCH_STREAM, kBanner)}}}},
      {"overlap: three bytes before it, TLS-looking ones", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn - 2, "\x16\x03\x03" + kBanner), XDP_PASS,
         {Banner(BW_MATCH_STREAM, kBanner)}}}},
      {"overlap over IPv6", defaults,
       {{false, SynAck6(kIsn)},
        {false, FromServer6(kIsn - 1, "ZZ" + kBanner), XDP_PASS, {Banner(BW_MATCH_STREAM, kBanner)}}}},
      {"overlap on egress (TC): a local server's banner", defaults,
       {{true, SynAck(kIsn), TC_ACT_OK},
        {true, FromServer(kIsn, "Z" + kBanner), TC_ACT_OK, {Banner(BW_MATCH_STREAM, kBanner)}}}},
      {"overlap with the server's banner action drop: the segment and the flow drop",
       [](BpfHarness& h) { h.SetBannerActions(BW_BANNER_DROP, BW_BANNER_ALERT); },
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn, "Z" + kBanner), XDP_DROP,
         {Banner(BW_MATCH_STREAM, kBanner, BW_VERDICT_DROP)}},
        {false, FromServer(kIsn + 1 + kBanner.size(), "more"), XDP_DROP}}},
      {"a retransmission of delivered bytes changes nothing; the next segment is checked",
       defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, "hello")},
        {false, FromServer(kIsn + 1, "hello")},
        {false, FromServer(kIsn + 3, "llo\r\n" + kBanner), XDP_PASS,
         {Banner(BW_MATCH_PRELINES, kBanner)}}},
       BW_FEAT_PRELINES},
      {"urgent data: \"X\" + banner, urgent pointer 1 (the receiver takes the X out)", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServerUrgent(kIsn + 1, "X" + kBanner, 1), XDP_PASS,
         {Banner(BW_MATCH_STREAM, kBanner)}}}},
      {"urgent data inside \"SSH-\": \"SSXH-...\", urgent pointer 3", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServerUrgent(kIsn + 1, "SSX" + kBanner.substr(2), 3), XDP_PASS,
         {Banner(BW_MATCH_STREAM, kBanner)}}}},
      {"urgent data and an overlap together", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServerUrgent(kIsn - 1, "ZZX" + kBanner, 3), XDP_PASS,
         {Banner(BW_MATCH_STREAM, kBanner)}}}},
      {"an urgent byte the receiver has delivered already (before the stream's byte) is no skip",
       defaults,
       {{false, SynAck(kIsn)},
        {false, FromServerUrgent(kIsn, "ZXSSH-2.0-x\r\n", 1)}}},
      {"an urgent pointer past the head: the first bytes are what they are", defaults,
       {{false, SynAck(kIsn)}, {false, FromServerUrgent(kIsn + 1, "X" + kBanner, 30)}}},
      {"lines before the version line across segments: \"x\", then \"\\r\\n\" + banner",
       defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, "x")},
        {false, FromServer(kIsn + 2, "\r\n" + kBanner), XDP_PASS,
         {Banner(BW_MATCH_PRELINES, kBanner)}}},
       BW_FEAT_PRELINES},
      {"lines across three segments", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, "Welcome\r\n")},
        {false, FromServer(kIsn + 10, "please wait")},
        {false, FromServer(kIsn + 21, "\r\n" + kBanner), XDP_PASS,
         {Banner(BW_MATCH_PRELINES, kBanner)}}},
       BW_FEAT_PRELINES},
      {"lines are followed for BW_PRELINES_SEGS segments, no more", defaults,
       [] {
         std::vector<Step> st = {{false, SynAck(kIsn)}};
         for (uint32_t i = 0; i < BW_PRELINES_SEGS; i++)
           st.push_back({false, FromServer(kIsn + 1 + i * 6, "line\r\n")});
         st.push_back({false, FromServer(kIsn + 1 + BW_PRELINES_SEGS * 6, "x\r\n" + kBanner)});
         return st;
       }()},
      {"a line too long ends the following", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, std::string(300, 'x') + "\r\nmore")},
        {false, FromServer(kIsn + 307, "\r\n" + kBanner)}}},
      {"a TLS first payload ends the following", defaults,
       {{false, SynAck(kIsn)},
        {false, FromServer(kIsn + 1, "\x16\x03\x03\x00\x10")},
        {false, FromServer(kIsn + 6, "\r\n" + kBanner)}}},
      {"tiny first fragment (RFC 1858): the TCP header alone, the banner in the next fragment",
       defaults,
       {{false, SynAck(kIsn)},
        {false, FragFirst(false, kIsn + 1, "")},
        {false, FragRest(false, 0, kBanner), XDP_PASS, {Banner(BW_MATCH_DIRECT, kBanner)}}}},
      {"tiny first fragment over IPv6", defaults,
       {{false, SynAck6(kIsn)},
        {false, FragFirst(true, kIsn + 1, "")},
        {false, FragRest(true, 0, kBanner), XDP_PASS, {Banner(BW_MATCH_DIRECT, kBanner)}}}},
      {"fragments: eight payload bytes in the first, lines, the version line in the second",
       defaults,
       {{false, SynAck(kIsn)},
        {false, FragFirst(false, kIsn + 1, "hello!\r\n")},
        {false, FragRest(false, 8, "more\r\n" + kBanner), XDP_PASS,
         {Banner(BW_MATCH_PRELINES, kBanner)}}},
       BW_FEAT_PRELINES},
      {"fragments on egress (TC): a local server's banner in the second", defaults,
       {{true, SynAck(kIsn), TC_ACT_OK},
        {true, FragFirst(false, kIsn + 1, ""), TC_ACT_OK},
        {true, FragRest(false, 0, kBanner), TC_ACT_OK, {Banner(BW_MATCH_DIRECT, kBanner)}}}},
      {"fragments: the later one before the first is not matched (counted)", defaults,
       {{false, SynAck(kIsn)},
        {false, FragRest(false, 0, kBanner)},
        {false, FragFirst(false, kIsn + 1, "")}}},
      {"HTTP CONNECT to :443 through a proxy port, the banner in the next segment", proxy,
       {{true, ToProxy("CONNECT 203.0.113.10:443 HTTP/1.1\r\nHost: 203.0.113.10:443\r\n\r\n"),
         TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.0 200 Connection established\r\n\r\n")},
        {false, FromProxy(539, kBanner), XDP_PASS, {Banner(BW_MATCH_CONNECT, kBanner)}}},
       BW_FEAT_CONNECT},
      {"HTTP CONNECT: the 200 reply and the banner in one segment", proxy,
       {{true, ToProxy("CONNECT [2001:db8::10]:443 HTTP/1.1\r\n\r\n"), TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.1 200 OK\r\n\r\n" + kBanner), XDP_PASS,
         {Banner(BW_MATCH_CONNECT, kBanner)}}},
       BW_FEAT_CONNECT},
      {"HTTP CONNECT to an unwatched port (22) is not followed", proxy,
       {{true, ToProxy("CONNECT 203.0.113.10:22 HTTP/1.1\r\n\r\n"), TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.0 200 Connection established\r\n\r\n")},
        {false, FromProxy(539, kBanner)}},
       BW_FEAT_CONNECT},
      {"HTTP CONNECT refused (403): the tunnel is forgotten", proxy,
       {{true, ToProxy("CONNECT 203.0.113.10:443 HTTP/1.1\r\n\r\n"), TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.0 403 Forbidden\r\n\r\n")},
        {false, FromProxy(530, kBanner)}},
       BW_FEAT_CONNECT},
      {"HTTP CONNECT: TLS through the tunnel is quiet", proxy,
       {{true, ToProxy("CONNECT 203.0.113.10:443 HTTP/1.1\r\n\r\n"), TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.0 200 Connection established\r\n\r\n")},
        {false, FromProxy(539, "\x16\x03\x03\x00\x40 server hello")},
        {false, FromProxy(600, kBanner)}},
       BW_FEAT_CONNECT},
      // Found by the differential fuzz: the target must end (a space) inside the 64 bytes read,
      // and the port is the digits after the last ':' alone.
      {"HTTP CONNECT: a port cut off at byte 64 (\"...:4433\") is not read as 443", proxy,
       {{true, ToProxy("CONNECT " + std::string(52, 'h') + ":4433 HTTP/1.1\r\n\r\n"), TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.1 200 OK\r\n\r\n" + kBanner)}},
       BW_FEAT_CONNECT},
      {"HTTP CONNECT: an IPv6 literal without a port has none", [](BpfHarness& h) { h.SetPorts({443, 22}, {8888}); },
       {{true, ToProxy("CONNECT [2001:db8::22] HTTP/1.1\r\n\r\n"), TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.1 200 OK\r\n\r\n" + kBanner)}},
       BW_FEAT_CONNECT},
      {"HTTP CONNECT: digits over 65535 in an earlier group do not hide the real port", proxy,
       {{true, ToProxy("CONNECT [::99999]:443 HTTP/1.1\r\n\r\n"), TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.1 200 OK\r\n\r\n" + kBanner), XDP_PASS,
         {Banner(BW_MATCH_CONNECT, kBanner)}}},
       BW_FEAT_CONNECT},
      {"HTTP CONNECT: a colon with no digits is no port 0", [](BpfHarness& h) { h.SetPorts({443, 0}, {8888}); },
       {{true, ToProxy("CONNECT host: HTTP/1.1\r\n\r\n"), TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.1 200 OK\r\n\r\n" + kBanner)}},
       BW_FEAT_CONNECT},
      {"without proxy ports, a CONNECT is just data", defaults,
       {{true, ToProxy("CONNECT 203.0.113.10:443 HTTP/1.1\r\n\r\n"), TC_ACT_OK},
        {false, FromProxy(500, "HTTP/1.0 200 Connection established\r\n\r\n" + kBanner)}}},
  };
}

void CheckEvents(const std::vector<bw_event>& got, const std::vector<Want>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(int(got[i].kind) == int(want[i].kind));
    CHECK(int(got[i].match) == int(want[i].match));
    CHECK(int(got[i].verdict) == int(want[i].verdict));
    CHECK(std::string(reinterpret_cast<const char*>(got[i].banner), got[i].banner_len) ==
          want[i].banner);
  }
}

TEST_CASE("sequences: split banners, lines before the version, CONNECT tunnels, non-TLS") {
  BpfHarness h;
  const uint32_t have = h.dataplane().features();
  int off = 0;
  for (const Sequence& s : Sequences()) {
    INFO("sequence: " << s.what);
    const bool feature_off = (s.needs & have) != s.needs;
    off += feature_off;
    h.Reset();
    s.setup(h);
    int n = 0;
    for (const Step& st : s.steps) {
      INFO("step " << ++n << (feature_off ? " (its detection is off in this variant)" : ""));
      RunResult r = st.egress ? h.RunTc(st.frame) : h.RunXdp(st.frame);
      CHECK(r.retval == (feature_off ? (st.egress ? TC_ACT_OK : XDP_PASS) : st.verdict));
      CheckEvents(r.events, feature_off ? std::vector<Want>{} : st.events);
    }
  }
  std::printf("sequences (%s variant): %zu, %d of them with their detection off (%s)\n",
              VariantName(h.dataplane().variant()), Sequences().size(), off,
              FeaturesOff(have).c_str());
}

// The same stream whole and cut into segments of 1, 2 and 3 bytes (then the rest): the alerts
// must be the same (kind, side, verdict, banner bytes); only `match` says how it was found.
TEST_CASE("split banners: a differential test against the whole banner") {
  BpfHarness h;
  std::mt19937 rng(42);
  const std::vector<std::string> banners = {
      kBanner, "SSH-2.0-dropbear_2022.83\r\n", "SSH-1.99-Cisco-1.25\r\n", "SSH-2.0-Go\r\n",
      "SSH-", "SSH-2.0-" + std::string(100, 'x')};
  int compared = 0;
  for (int server_side = 0; server_side < 2; ++server_side) {
    for (const std::string& b : banners) {
      h.Reset();
      uint32_t seq = 5000 + rng() % 100000;
      auto frame = [&](uint32_t s, const std::string& p) {
        return server_side ? FromServer(s, p) : ToServer(s, p);
      };
      RunResult whole = h.RunXdp(frame(seq, b));
      REQUIRE(whole.events.size() == 1u);
      for (size_t cut : {1, 2, 3}) {
        // cut bytes first, one segment each up to 3, then the remainder.
        h.Reset();
        std::vector<bw_event> got;
        uint32_t s = seq;
        size_t pos = 0;
        while (pos < 4 && pos < b.size()) {
          size_t n = std::min(cut, std::min<size_t>(4 - pos, b.size() - pos));
          if (pos + n >= 4) break;
          RunResult r = h.RunXdp(frame(s, b.substr(pos, n)));
          got.insert(got.end(), r.events.begin(), r.events.end());
          s += n;
          pos += n;
        }
        RunResult r = h.RunXdp(frame(s, b.substr(pos)));
        got.insert(got.end(), r.events.begin(), r.events.end());
        INFO("banner " << b << " cut " << cut << " server " << server_side);
        REQUIRE(got.size() == 1u);
        const bw_event& w = whole.events[0];
        const bw_event& g = got[0];
        CHECK(int(g.kind) == int(w.kind));
        CHECK(int(g.banner_side) == int(w.banner_side));
        CHECK(int(g.verdict) == int(w.verdict));
        CHECK(std::string(reinterpret_cast<const char*>(g.banner), g.banner_len) ==
              std::string(reinterpret_cast<const char*>(w.banner), w.banner_len));
        CHECK(int(g.match) == (pos == 0 ? BW_MATCH_DIRECT : BW_MATCH_SPLIT));
        ++compared;
      }
    }
  }
  std::printf("split differential: %d segmented streams matched their whole banner\n", compared);
  CHECK(compared == 2 * 6 * 3);
}

}  // namespace
}  // namespace bw::test
