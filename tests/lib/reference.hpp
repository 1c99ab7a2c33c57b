// reference.hpp — a plain userspace model of the data plane's rules, for differential testing.
//
// Contract: ReferenceModel is written from the rules (not from the BPF code): it parses raw frame
// bytes the way an ordinary userspace parser would, with its own bounds checks, and decides what the
// XDP/TC programs must do with them: the verdict, the events (every deterministic field), the
// counter increments and the watchlist entry statistics (hits, drops). It keeps its own set of
// banner-dropped flows, like the kernel's bw_flows. The configuration mirrors what the test wrote
// into the maps; the block-event rate limiter is not modelled (configure an interval of 0).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
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

struct RefConfig {
  // In insertion order; a later prefix with the same (family, len, masked address) replaces an
  // earlier one, as a map update does.
  std::vector<RefPrefix> prefixes;
  std::array<bool, 65536> watched{};  // bw_ports & BW_PORT_WATCHED, by port
  uint8_t banner_action[BW_SIDE__MAX] = {BW_BANNER_OFF, BW_BANNER_OFF};
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
  std::string banner;  // up to BW_BANNER_MAX payload bytes (BW_EV_BANNER only)
  std::string ToString() const;
};

// How the model got to its verdict (for the outcome breakdown of a fuzz run).
enum class RefPath {
  kNonIp,          // not IPv4/IPv6 after the VLAN tags
  kMalformedL3,    // Ethernet/VLAN/IP unusable: no address check
  kSafelist,       // remote safelisted
  kBlock,          // remote blocked
  kAddrOnly,       // later fragment, bad L4, extension limit, or not TCP: passed after the address check
  kPortUnwatched,  // TCP, neither port watched
  kFlowDrop,       // a banner-dropped flow
  kBannerOff,      // watched port but both applicable banner actions off
  kNoBanner,       // watched port, payload is not "SSH-..."
  kBannerAlert,    // "SSH-" reported, passed
  kBannerDrop,     // "SSH-" reported, dropped
  kCount,
};
const char* RefPathName(RefPath p);

struct RefResult {
  uint8_t verdict = BW_VERDICT_PASS;
  std::vector<RefEvent> events;
  CounterArray counters{};  // increments caused by this frame
  RefPath path = RefPath::kNonIp;
  bool watch_event = false;
  std::string trace;  // a few words per step, for failure reports
};

class ReferenceModel {
 public:
  explicit ReferenceModel(const RefConfig& cfg);

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

 private:
  Entry* Lookup(int family, const uint8_t* addr);
  RefConfig cfg_;
  std::vector<Entry> entries_;
  std::set<FlowKey> flows_;
};

}  // namespace bw::test
