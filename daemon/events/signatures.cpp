#include "daemon/events/signatures.hpp"

#include <array>

#include "maps/bannerwatch_abi.h"

namespace bw {
namespace {

// Category and severity are Suricata's classification.config entries for the classtype:
//   misc-activity    "Misc activity"                         3
//   policy-violation "Potential Corporate Privacy Violation" 1
//   misc-attack      "Misc Attack"                           2
//   bad-unknown      "Potentially Bad Traffic"               2
//   protocol-command-decode "Generic Protocol Command Decode" 3
constexpr std::array<Signature, 6> kTable = {{
    {1, kSidSshServerBanner, 1, "ET POLICY SSH banner detected on TCP 443 likely proxy evasion",
     "misc-activity", "Misc activity", 3, true},
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
    default:
      return nullptr;
  }
}

std::span<const Signature> AllSignatures() { return kTable; }

const Signature* SignatureById(uint32_t signature_id) {
  for (const Signature& s : kTable)
    if (s.signature_id == signature_id) return &s;
  return nullptr;
}

}  // namespace bw
