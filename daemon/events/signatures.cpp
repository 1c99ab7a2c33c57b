#include "daemon/events/signatures.hpp"

#include <array>
#include <cstring>

#include "maps/bannerwatch_abi.h"

namespace bw {
namespace {

// Category and severity are Suricata's classification.config entries for the classtype:
//   misc-activity    "Misc activity"                         3
//   policy-violation "Potential Corporate Privacy Violation" 1
//   misc-attack      "Misc Attack"                           2
//   bad-unknown      "Potentially Bad Traffic"               2
//   protocol-command-decode "Generic Protocol Command Decode" 3
constexpr std::array<Signature, 7> kTable = {{
    {1, kSidSshServerBanner, 1, "ET POLICY SSH banner detected on TCP 443 likely proxy evasion",
     "misc-activity", "Misc activity", 3, true, MsgPort::kSource},
    {1, kSidSshClientBanner, 1,
     "BANNERWATCH SSH client banner sent to watched TCP port likely proxy evasion",
     "policy-violation", "Potential Corporate Privacy Violation", 1, true},
    {1, kSidBlockedAddress, 1, "BANNERWATCH traffic with blocked watchlist address dropped",
     "misc-attack", "Misc Attack", 2, true},
    {1, kSidWatchedAddress, 1, "BANNERWATCH connection with watched watchlist address",
     "bad-unknown", "Potentially Bad Traffic", 2, true},
    {1, kSidNonTlsOnWatchedPort, 1, "BANNERWATCH non-TLS payload on watched TCP port",
     "protocol-command-decode", "Generic Protocol Command Decode", 3, true},
    {1, kSidUnparsed, 1,
     "BANNERWATCH IPv6 extension header chain longer than inspected, transport not checked",
     "bad-unknown", "Potentially Bad Traffic", 2, true},
    {1, kSidBeacon, 1, "BANNERWATCH periodic connections to one remote address likely beaconing",
     "bad-unknown", "Potentially Bad Traffic", 2, true},
}};

}  // namespace

const Signature* SignatureForEvent(uint8_t kind, uint8_t banner_side) {
  switch (kind) {
    case BW_EV_BANNER:
      if (banner_side == BW_SIDE_SERVER) return &kTable[0];
      if (banner_side == BW_SIDE_CLIENT) return &kTable[1];
      return nullptr;
    case BW_EV_BLOCK:
      return &kTable[2];
    case BW_EV_WATCH:
      return &kTable[3];
    case BW_EV_NON_TLS:
      return &kTable[4];
    case BW_EV_UNPARSED:
      return &kTable[5];
    case BW_EV_BEACON:
      return &kTable[6];
    default:
      return nullptr;
  }
}

std::span<const Signature> AllSignatures() { return kTable; }

std::string_view SignatureMessage(const Signature& s, uint16_t sport, uint16_t dport, char* buf) {
  if (s.msg_port == MsgPort::kNone) return s.msg;
  const uint16_t port = s.msg_port == MsgPort::kSource ? sport : dport;
  constexpr std::string_view kDefault = "TCP 443";
  const size_t at = s.msg.find(kDefault);
  if (at == std::string_view::npos || port == 443) return s.msg;
  char* p = buf;
  std::memcpy(p, s.msg.data(), at + 4);  // up to and including "TCP "
  p += at + 4;
  char digits[5];
  int n = 0;
  uint16_t v = port;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = digits[--n];
  const std::string_view rest = s.msg.substr(at + kDefault.size());
  std::memcpy(p, rest.data(), rest.size());
  p += rest.size();
  return std::string_view(buf, static_cast<size_t>(p - buf));
}

const Signature* SignatureById(uint32_t signature_id) {
  for (const Signature& s : kTable)
    if (s.signature_id == signature_id) return &s;
  return nullptr;
}

}  // namespace bw
