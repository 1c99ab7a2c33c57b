// reference.hpp — a plain userspace model of the data plane's rules, for differential testing.
//
// Contract: ReferenceModel is written from the rules (not from the BPF code): it parses raw frame
// bytes the way an ordinary userspace parser would, with its own bounds checks, and decides what
// the XDP/TC programs must do with them: the verdict, the events (every deterministic field), the
// counter increments and the watchlist entry statistics (hits, drops). It keeps its own copy of
// the state the kernel keeps between frames: banner-dropped flows (bw_flows), awaited first
// server streams (bw_stream), split banners (bw_partial) and CONNECT tunnels (bw_tunnels), so a test can
// compare them with the maps. The configuration mirrors what the test wrote into the maps; the
// block-event rate limiter is not modelled (configure an interval of 0), nor LRU eviction (keep
// the distinct keys of a run far below the maps' sizes).
//
// Where the kernel is known to depart from the rules, RefConfig::quirks can make the model follow
// the kernel instead (each departure is named in enum RefQuirk); RefResult::quirk says when one
// of them decided a frame's outcome, so a run can report how often.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "maps/bannerwatch_abi.h"
#include "maps/maps.hpp"

namespace bw::test {

// One watchlist prefix as written to bw_watch_v4 / bw_watch_v6.
struct RefPrefix {
  int family = 4;         // 4 or 6: which trie
  uint8_t addr[16] = {};  // network order; IPv4 in the first 4 bytes
  uint8_t len = 0;        // 0..32 or 0..128
  uint32_t list_id = 0;
  uint32_t entry_ref = 0;
  uint8_t action = BW_ACTION_NONE;  // enum bw_action bits, any combination
  std::string ToString() const;     // "203.0.113.0/24 act=3 list=7 ref=9"
};

// Known departures of the kernel from the rules, all in the parsing of a CONNECT request line
// (the rules: the target is the bytes after "CONNECT " up to the first space, which must lie in the
// first 64 payload bytes; the port is the digits after the target's last ':', which must be
// followed by nothing but digits; at least one digit, at most 65535). The kernel follows the rules
// now; the quirks remain so an older kernel's behaviour can be reproduced with BW_FUZZ_STRICT=0.
enum RefQuirk : uint32_t {
  kQuirkConnectWindowEnd = 1u << 0,    // no space in a full 64-byte window: the window's end ends
                                       // the target, so a port cut at byte 64 counts ("...:4433"
                                       // read as 443)
  kQuirkConnectAnyOverflow = 1u << 1,  // digits above 65535 after ANY colon (one later superseded
                                       // or cancelled) refuse the request
  kQuirkConnectEmptyPort = 1u << 2,    // a ':' with no digits after it reads as port 0
  kQuirkAll = 7u,
};

struct RefConfig {
  // In insertion order; a later prefix with the same (family, len, masked address) replaces an
  // earlier one, as a map update does.
  std::vector<RefPrefix> prefixes;
  std::array<uint8_t, 65536> port_flags{};  // bw_ports values by port (BW_PORT_WATCHED, _PROXY)
  uint8_t banner_action[BW_SIDE__MAX] = {BW_BANNER_OFF, BW_BANNER_OFF};
  uint8_t flags = 0;    // bw_config.flags (BW_CFG_NON_TLS)
  uint8_t unparsed = BW_UNPARSED_PASS;  // bw_config.unparsed (enum bw_unparsed_action)
  uint32_t quirks = 0;  // enum RefQuirk bits: kernel departures the model follows
  // enum bw_feature bits of the object under test: the core variant follows no CONNECT tunnels
  // and finds no version line after other lines.
  uint32_t features = BW_FEATURES_FULL;
};

// An event as the model expects it (no timestamp: it is not deterministic).
struct RefEvent {
  uint8_t kind = 0;
  uint8_t direction = 0;
  uint8_t family = 0;
  uint8_t verdict = 0;
  uint32_t list_id = 0;
  uint32_t entry_ref = 0;
  uint8_t list_action = 0;
  uint8_t prefixlen = 0;
  uint8_t l4proto = 0;
  uint8_t tcp_flags = 0;
  uint8_t saddr[16] = {};
  uint8_t daddr[16] = {};
  uint16_t sport = 0;  // host order
  uint16_t dport = 0;
  uint8_t banner_side = 0;
  uint8_t match = 0;   // enum bw_banner_match (BW_EV_BANNER; 0 otherwise)
  std::string banner;  // up to BW_BANNER_MAX bytes (BW_EV_BANNER, BW_EV_NON_TLS)
  std::string ToString() const;
};

// How the model got to its verdict (for the outcome breakdown of a fuzz run).
enum class RefPath {
  kNonIp,           // not IPv4/IPv6 after the VLAN tags
  kMalformedL3,     // Ethernet/VLAN/IP unusable: no address check
  kSafelist,        // remote safelisted
  kBlock,           // remote blocked
  kUnparsed,        // more VLAN tags or IPv6 extension headers than walked: unparsed action
  kAddrOnly,        // later fragment, bad L4, extension limit, or not TCP: address check only
  kPortUnwatched,   // TCP, neither port watched nor a proxy port
  kFlowDrop,        // a banner-dropped flow
  kBannerOff,       // watched/proxy port but every check that applies is off
  kSynAck,          // SYN-ACK without payload (bw_stream set when the server side is checked)
  kNoPayload,       // no payload
  kConnectTunnel,   // CONNECT to a watched port on a proxy port: tunnel requested
  kConnectIgnored,  // "CONN..." to a proxy port that asks for no followed tunnel
  kTunnelOpen,      // the proxy's 200 without a banner after its head: tunnel open
  kTunnelClosed,    // the proxy's refusal, or an open tunnel's first segment without a banner
  kTunnelWait,      // a proxy segment that is not an HTTP reply: tunnel kept
  kSplitWait,       // the start of "SSH-" in a short segment: partial kept
  kFirstPayload,    // a server's first payload: TLS, HTTP, or no version line, non-TLS flag off
  kStreamLines,     // a later segment of a server's lines, no version line yet
  kNonTls,          // a server's first payload that is neither TLS nor HTTP (event)
  kNoBanner,        // watched port, no banner found
  kBannerAlert,     // a banner reported, passed
  kBannerDrop,      // a banner reported, dropped
  kCount,
};
const char* RefPathName(RefPath p);

struct RefResult {
  uint8_t verdict = BW_VERDICT_PASS;
  std::vector<RefEvent> events;
  CounterArray counters{};  // increments caused by this frame
  RefPath path = RefPath::kNonIp;
  bool watch_event = false;
  uint32_t quirk = 0;  // enum RefQuirk bits that changed this frame's outcome from the rules'
  std::string trace;  // a few words per step, for failure reports
};

class ReferenceModel {
 public:
  explicit ReferenceModel(const RefConfig& cfg);

  // A run-time configuration change (bw_config, bw_ports): banner actions, flags and port flags
  // are taken from `cfg`; the watchlists, their statistics and the kept state stay.
  void Reconfigure(const RefConfig& cfg);

  // Runs one frame seen in `dir` (ingress: the remote is the source; egress: the destination).
  RefResult Run(const uint8_t* frame, size_t len, bw_direction dir);

  // The deduplicated watchlist (what the tries hold), with the statistics the kernel keeps in
  // bw_list_value: hits (watch events) and drops (blocked packets).
  struct Entry {
    RefPrefix prefix;
    uint64_t hits = 0;
    uint64_t drops = 0;
  };
  const std::vector<Entry>& entries() const { return entries_; }

  // Banner-dropped flows as canonical keys (family, lower endpoint, higher endpoint), where an
  // endpoint is 16 address bytes then the port in network order.
  using FlowKey = std::string;
  static FlowKey MakeFlowKey(uint8_t family, const uint8_t a[16], uint16_t aport,
                             const uint8_t b[16], uint16_t bport);
  const std::set<FlowKey>& flows() const { return flows_; }

  // Directional keys of bw_stream, bw_partial and bw_tunnels: family, then the sender's endpoint
  // ("a": the server or proxy whose segments are awaited), then the receiver's.
  using DirKey = std::string;
  static DirKey MakeDirKey(uint8_t family, const uint8_t a[16], uint16_t aport, const uint8_t b[16],
                           uint16_t bport);
  static std::string DirKeyText(const DirKey& k);  // "203.0.113.10:443 > 198.51.100.20:51000"
  struct Partial {
    uint32_t next_seq = 0;
    uint8_t len = 0;
    bool operator==(const Partial&) const = default;
  };
  struct Tunnel {
    uint8_t state = 0;  // enum bw_tunnel_state
    uint16_t target_port = 0;
    bool operator==(const Tunnel&) const = default;
  };
  struct Stream {
    uint32_t next_seq = 0;  // the sequence number of the byte the receiver awaits
    uint16_t seen = 0;      // stream bytes seen with lines, no version line yet
    uint8_t state = BW_STREAM_FIRST;
    uint8_t segs = 0;
    bool operator==(const Stream&) const = default;
  };
  const std::map<DirKey, Stream>& streams() const { return streams_; }
  const std::map<DirKey, Partial>& partial() const { return partial_; }
  const std::map<DirKey, Tunnel>& tunnels() const { return tunnels_; }

  // The CONNECT rule on its own: the target port of a request line (the first up to 64 payload
  // bytes), or -1 when the line names none. `quirks` as in RefConfig.
  static int ConnectPort(const uint8_t* payload, size_t len, uint32_t quirks);

 private:
  // The first fragment of a TCP datagram on a watched or proxy port (bw_frags).
  struct Frag {
    uint16_t sport = 0, dport = 0;
    uint32_t seq = 0;
    uint16_t pay_start = 0;  // where the TCP payload starts in the fragmentable part
    uint16_t urg_ptr = 0;
    uint8_t tcp_flags = 0;
  };
  std::map<std::string, Frag> frags_;
  Entry* Lookup(int family, const uint8_t* addr);
  RefConfig cfg_;
  std::vector<Entry> entries_;
  std::set<FlowKey> flows_;
  std::map<DirKey, Stream> streams_;
  std::map<DirKey, Partial> partial_;
  std::map<DirKey, Tunnel> tunnels_;
};

}  // namespace bw::test
