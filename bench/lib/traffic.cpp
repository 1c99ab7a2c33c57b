#include "bench/lib/traffic.hpp"

#include <arpa/inet.h>

#include <cstdlib>
#include <cstring>

namespace bw::bench {
namespace {

constexpr size_t kEth = 14, kIp = 20;

// IPv4 header and L4 checksums (host order) of `f` as it is now.
void Checksums(test::Bytes& f, uint16_t* ip, uint16_t* l4, uint32_t l4_csum_off) {
  uint8_t* iph = f.data() + kEth;
  iph[10] = iph[11] = 0;
  *ip = test::ChecksumFold(test::ChecksumAdd(iph, kIp));
  *l4 = 0;
  if (!l4_csum_off) return;
  uint8_t proto = iph[9];
  size_t l4len = (static_cast<size_t>(iph[2]) << 8 | iph[3]) - kIp;
  uint8_t* seg = f.data() + kEth + kIp;
  f[l4_csum_off] = f[l4_csum_off + 1] = 0;
  uint32_t s = test::ChecksumAdd(iph + 12, 8);
  s += proto;
  s += static_cast<uint32_t>(l4len);
  s = test::ChecksumAdd(seg, l4len, s);
  *l4 = test::ChecksumFold(s);
  if (proto == 17 && *l4 == 0) *l4 = 0xffff;
}

}  // namespace

Traffic MakeTraffic(const std::string& name, Kind kind, const std::vector<uint32_t>& remotes,
                    bool bad_l4_csum, const Macs& macs, Direction dir) {
  const bool egress = dir == Direction::kEgress;
  test::PacketBuilder b;
  // The remote address (192.0.2.1 here) is rewritten per row.
  if (egress)
    b.ipv4("198.51.100.2", "192.0.2.1");
  else
    b.ipv4("192.0.2.1", "198.51.100.2");
  switch (kind) {
    case Kind::kUdp:
      b.udp(53, 41000).payload(std::string(
          "\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x07" "example\x03" "com\x00\x00\x01\x00\x01",
          29));
      break;
    case Kind::kTcpUnwatched:
    case Kind::kTcpClientPorts:
      b.tcp(80, 41000).payload("HTTP/1.1 200 OK\r\n");
      break;
    case Kind::kTls443:
      b.tcp(443, 41000).payload(std::string("\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03", 11));
      break;
    case Kind::kSshBanner:
      b.tcp(443, 41000).payload("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
      break;
  }
  Traffic t;
  t.name = name;
  t.frame = b.build();
  t.addr_off = static_cast<uint32_t>(kEth + (egress ? 16 : 12));
  std::memcpy(t.frame.data(), macs.dst, 6);
  std::memcpy(t.frame.data() + 6, macs.src, 6);
  t.l4_csum_off = static_cast<uint32_t>(kEth + kIp + (kind == Kind::kUdp ? 6 : 16));
  if (kind == Kind::kTcpClientPorts) t.dport_off = static_cast<uint32_t>(kEth + kIp + 2);

  test::Bytes f = t.frame;
  t.rows.reserve(remotes.size());
  for (uint32_t s : remotes) {
    uint32_t n = htonl(s);
    std::memcpy(f.data() + t.addr_off, &n, 4);
    uint16_t dport = 0;
    if (t.dport_off) {
      // A port from the source (a fixed mix, so runs repeat): spread over the ephemeral range.
      dport = htons(static_cast<uint16_t>(32768 + (s * 2654435761u >> 7) % 28232));
      std::memcpy(f.data() + t.dport_off, &dport, 2);
    }
    uint16_t ip, l4;
    Checksums(f, &ip, &l4, t.l4_csum_off);
    if (bad_l4_csum) l4 ^= 0x0001;  // off by one in ones' complement: never verifies
    AddrRow r;
    r.addr = n;
    r.ip_csum = htons(ip);
    r.l4_csum = htons(l4);
    r.dport = dport;
    t.rows.push_back(r);
  }
  // The template itself carries the first row, so a frame that is never rewritten is valid too.
  if (!t.rows.empty()) {
    std::memcpy(t.frame.data() + t.addr_off, &t.rows[0].addr, 4);
    std::memcpy(t.frame.data() + kEth + 10, &t.rows[0].ip_csum, 2);
    std::memcpy(t.frame.data() + t.l4_csum_off, &t.rows[0].l4_csum, 2);
    if (t.dport_off) std::memcpy(t.frame.data() + t.dport_off, &t.rows[0].dport, 2);
  }
  return t;
}

}  // namespace bw::bench
