#include "daemon/events/community_id.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cstring>

namespace bw {
namespace {

// Hashes the ordered tuple; `swap` puts the destination endpoint first.
void Hash(const CommunityIdTuple& t, bool swap, uint16_t seed, char out[kCommunityIdChars]) {
  const uint8_t* a = swap ? t.daddr : t.saddr;
  const uint8_t* b = swap ? t.saddr : t.daddr;
  const uint16_t ap = swap ? t.dport : t.sport;
  const uint16_t bp = swap ? t.sport : t.dport;
  uint8_t buf[2 + 16 + 16 + 2 + 4];
  size_t n = 0;
  buf[n++] = static_cast<uint8_t>(seed >> 8);
  buf[n++] = static_cast<uint8_t>(seed);
  std::memcpy(buf + n, a, t.alen);
  n += t.alen;
  std::memcpy(buf + n, b, t.alen);
  n += t.alen;
  buf[n++] = t.proto;
  buf[n++] = 0;  // pad: the input stays 32-bit aligned
  if (t.has_ports) {
    buf[n++] = static_cast<uint8_t>(ap >> 8);
    buf[n++] = static_cast<uint8_t>(ap);
    buf[n++] = static_cast<uint8_t>(bp >> 8);
    buf[n++] = static_cast<uint8_t>(bp);
  }
  uint8_t digest[SHA_DIGEST_LENGTH];
  SHA1(buf, n, digest);
  out[0] = '1';
  out[1] = ':';
  // 20 bytes -> 28 characters ("=" padded); EVP_EncodeBlock writes no newline, plus a NUL.
  unsigned char b64[29];
  EVP_EncodeBlock(b64, digest, SHA_DIGEST_LENGTH);
  std::memcpy(out + 2, b64, 28);
}

// The spec's order_endpoints: keep (s, d) if s's address is smaller, or the addresses are equal
// and s's port is smaller; otherwise swap.
bool Swap(const CommunityIdTuple& t) {
  const int c = std::memcmp(t.saddr, t.daddr, t.alen);
  return !(c < 0 || (c == 0 && t.sport < t.dport));
}

}  // namespace

void CommunityIdV1(const CommunityIdTuple& t, uint16_t seed, char out[kCommunityIdChars]) {
  Hash(t, Swap(t), seed, out);
}

IcmpPortEquivalents IcmpPorts(bool v6, uint8_t type, uint8_t code) {
  int counterpart = -1;
  if (!v6) {
    switch (type) {
      case 8: counterpart = 0; break;    // echo -> echo reply
      case 0: counterpart = 8; break;
      case 13: counterpart = 14; break;  // timestamp
      case 14: counterpart = 13; break;
      case 15: counterpart = 16; break;  // information
      case 16: counterpart = 15; break;
      case 10: counterpart = 9; break;   // router solicitation -> advertisement
      case 9: counterpart = 10; break;
      case 17: counterpart = 18; break;  // address mask
      case 18: counterpart = 17; break;
    }
  } else {
    switch (type) {
      case 128: counterpart = 129; break;  // echo request -> reply
      case 129: counterpart = 128; break;
      case 130: counterpart = 131; break;  // MLD listener query -> report
      case 131: counterpart = 130; break;
      case 133: counterpart = 134; break;  // router solicitation -> advertisement
      case 134: counterpart = 133; break;
      case 135: counterpart = 136; break;  // neighbor solicitation -> advertisement
      case 136: counterpart = 135; break;
      case 139: counterpart = 140; break;  // node information (WRU) query -> reply
      case 140: counterpart = 139; break;
      case 144: counterpart = 145; break;  // home agent address discovery request -> reply
      case 145: counterpart = 144; break;
    }
  }
  if (counterpart < 0) return {type, code, true};
  return {type, static_cast<uint16_t>(counterpart), false};
}

void CommunityIdIcmp(const uint8_t* saddr, const uint8_t* daddr, size_t alen, bool v6,
                     uint8_t type, uint8_t code, uint16_t seed, char out[kCommunityIdChars]) {
  const IcmpPortEquivalents e = IcmpPorts(v6, type, code);
  CommunityIdTuple t{saddr, daddr, alen, static_cast<uint8_t>(v6 ? 58 : 1), true, e.sport, e.dport};
  Hash(t, e.one_way ? false : Swap(t), seed, out);
}

std::string CommunityIdString(const CommunityIdTuple& t, uint16_t seed) {
  char out[kCommunityIdChars];
  CommunityIdV1(t, seed, out);
  return std::string(out, kCommunityIdChars);
}

}  // namespace bw
