// signatures.hpp — the signature table: which alert each bannerwatch event is reported as.
//
// Contract: every event the data plane emits (enum bw_event_kind, and for BW_EV_BANNER the
// enum bw_banner_side) maps to exactly one Signature: gid, signature_id, rev, message, classtype,
// the Suricata category text of that classtype (classification.config) and its severity
// (priority). The table is static, immutable and thread-safe; ids are unique and never reused.
// docs/signatures.md documents every id (a unit test checks that it names each one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace bw {

inline constexpr uint32_t kSidSshServerBanner = 1000146;  // the seed's ET POLICY rule
inline constexpr uint32_t kSidSshClientBanner = 1000147;
inline constexpr uint32_t kSidBlockedAddress = 1000148;
inline constexpr uint32_t kSidWatchedAddress = 1000149;
inline constexpr uint32_t kSidNonTlsOnWatchedPort = 1000150;  // banner.non_tls: alert
inline constexpr uint32_t kSidUnparsed = 1000151;             // unparsed: alert
inline constexpr uint32_t kSidBeacon = 1000152;               // beacon detection

// Which of the event's ports a signature's message names (its text has "TCP 443", the default
// watched port, which the event's port replaces: a banner from port 8443 says "TCP 8443").
enum class MsgPort : uint8_t { kNone, kSource, kDestination };

struct Signature {
  uint32_t gid;
  uint32_t signature_id;
  uint32_t rev;
  std::string_view msg;        // "signature" in EVE
  std::string_view classtype;  // Suricata classtype name, e.g. "misc-activity"
  std::string_view category;   // its classification.config text, e.g. "Misc activity"
  uint8_t severity;            // its priority: 1 (high) .. 4 (low)
  bool emitted;                // false: reserved id, no event produces it yet
  MsgPort msg_port = MsgPort::kNone;
};

// The message for one event: `msg` with "TCP 443" made "TCP <port>" for the event's port (host
// order) when the signature names one; otherwise `msg`. Written to `buf` (at least msg.size() + 2
// bytes) when it changes; the view is into `buf` or the table.
std::string_view SignatureMessage(const Signature& s, uint16_t sport, uint16_t dport, char* buf);
inline constexpr size_t kSignatureMessageExtra = 2;  // 443 -> at most 65535

// The signature an event is reported as; nullptr for an unknown kind or banner side.
// `banner_side` is read only for BW_EV_BANNER.
const Signature* SignatureForEvent(uint8_t kind, uint8_t banner_side);

// Every signature, emitted and reserved, in signature_id order.
std::span<const Signature> AllSignatures();

// The signature with this id (gid 1), or nullptr.
const Signature* SignatureById(uint32_t signature_id);

}  // namespace bw
