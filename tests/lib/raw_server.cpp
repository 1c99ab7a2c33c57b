#include "lib/raw_server.hpp"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>

#include "lib/packet.hpp"
#include "lib/probe.hpp"
#include "lib/test_util.hpp"

namespace bw::test {
namespace {


void Put16(uint8_t* p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = v & 0xff;
}
void Put32(uint8_t* p, uint32_t v) {
  Put16(p, v >> 16);
  Put16(p + 2, v & 0xffff);
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t Get32(const uint8_t* p) { return (uint32_t{Get16(p)} << 16) | Get16(p + 2); }

}  // namespace

RawTcpServer::RawTcpServer(Topology& t, const std::string& addr, uint16_t port,
                           std::vector<RawSegment> segments)
    : t_(t), addr_(addr), port_(port), segments_(std::move(segments)) {
  v6_ = addr.find(':') != std::string::npos;
  REQUIRE(inet_pton(v6_ ? AF_INET6 : AF_INET, addr.c_str(), ip_) == 1);
  bool ok = false;
  InNetns(t.server(), [&] {
    ifindex_ = static_cast<int>(if_nametoindex(kServerIf));
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd_ < 0 || ifindex_ == 0) return;
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex_;
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, kServerIf, IFNAMSIZ - 1);
    ok = bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) == 0 &&
         ioctl(fd_, SIOCGIFHWADDR, &ifr) == 0;
    std::memcpy(mac_, ifr.ifr_hwaddr.sa_data, 6);
  });
  REQUIRE(ok);
  char mac[18];
  std::snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", mac_[0], mac_[1], mac_[2],
                mac_[3], mac_[4], mac_[5]);
  REQUIRE(t.host().Run(std::string("ip ") + (v6_ ? "-6 " : "") + "neigh replace " + addr +
                       " lladdr " + mac + " dev " + kHostIf + " nud permanent") == 0);
  thread_ = std::thread([this] { Serve(); });
}

RawTcpServer::~RawTcpServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
  t_.host().Run(std::string("ip ") + (v6_ ? "-6 " : "") + "neigh del " + addr_ + " dev " +
                kHostIf + " 2>/dev/null");
}

void RawTcpServer::SendIp(const uint8_t* peer_mac, const uint8_t* peer_ip,
                          const std::vector<uint8_t>& l4, bool fragment, size_t frag_off,
                          bool more) {
  const size_t ip_len = v6_ ? 40 + (fragment ? 8 : 0) : 20;
  std::vector<uint8_t> f(14 + ip_len + l4.size(), 0);
  std::memcpy(&f[0], peer_mac, 6);
  std::memcpy(&f[6], mac_, 6);
  Put16(&f[12], v6_ ? ETH_P_IPV6 : ETH_P_IP);
  uint8_t* ip = &f[14];
  if (v6_) {
    ip[0] = 0x60;
    Put16(ip + 4, static_cast<uint16_t>(ip_len - 40 + l4.size()));
    ip[6] = fragment ? 44 : IPPROTO_TCP;
    ip[7] = 64;
    std::memcpy(ip + 8, ip_, 16);
    std::memcpy(ip + 24, peer_ip, 16);
    if (fragment) {
      ip[40] = IPPROTO_TCP;
      Put16(ip + 42, static_cast<uint16_t>(frag_off | (more ? 1 : 0)));
      Put32(ip + 44, ip_id_);
    }
  } else {
    ip[0] = 0x45;
    Put16(ip + 2, static_cast<uint16_t>(ip_len + l4.size()));
    Put16(ip + 4, static_cast<uint16_t>(ip_id_));
    Put16(ip + 6, fragment ? static_cast<uint16_t>((more ? 0x2000 : 0) | frag_off / 8) : 0x4000);
    ip[8] = 64;
    ip[9] = IPPROTO_TCP;
    std::memcpy(ip + 12, ip_, 4);
    std::memcpy(ip + 16, peer_ip, 4);
    Put16(ip + 10, ChecksumFold(ChecksumAdd(ip, 20)));
  }
  std::memcpy(ip + ip_len, l4.data(), l4.size());
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, peer_mac, 6);
  sendto(fd_, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
}

void RawTcpServer::Send(const uint8_t* peer_mac, const uint8_t* peer_ip, uint16_t peer_port,
                        uint32_t seq, uint32_t ack, uint8_t flags, const std::string& payload,
                        int urg, int frag) {
  // Fragmented segments carry 4 bytes of options (NOPs): a 24-byte header, a multiple of 8.
  const size_t hdr = frag >= 0 ? 24 : 20;
  std::vector<uint8_t> tcp(hdr + payload.size(), 0);
  Put16(&tcp[0], port_);
  Put16(&tcp[2], peer_port);
  Put32(&tcp[4], seq);
  Put32(&tcp[8], ack);
  tcp[12] = static_cast<uint8_t>((hdr / 4) << 4);
  tcp[13] = static_cast<uint8_t>(flags | (urg >= 0 ? kUrg : 0));
  Put16(&tcp[14], 65535);
  if (urg >= 0) Put16(&tcp[18], static_cast<uint16_t>(urg));
  for (size_t i = 20; i < hdr; i++) tcp[i] = 1;  // NOP
  std::memcpy(&tcp[hdr], payload.data(), payload.size());
  // The checksum over the pseudo-header and the whole segment.
  uint32_t pseudo = ChecksumAdd(ip_, v6_ ? 16 : 4) + ChecksumAdd(peer_ip, v6_ ? 16 : 4) +
                    static_cast<uint32_t>(tcp.size()) + IPPROTO_TCP;
  Put16(&tcp[16], ChecksumFold(ChecksumAdd(tcp.data(), tcp.size(), pseudo)));
  if (frag < 0) {
    SendIp(peer_mac, peer_ip, tcp, false, 0, false);
    return;
  }
  const size_t cut = hdr + static_cast<size_t>(frag);
  ip_id_++;
  SendIp(peer_mac, peer_ip, std::vector<uint8_t>(tcp.begin(), tcp.begin() + cut), true, 0, true);
  SendIp(peer_mac, peer_ip, std::vector<uint8_t>(tcp.begin() + cut, tcp.end()), true, cut, false);
}

void RawTcpServer::Serve() {
  uint8_t buf[2048];
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    sockaddr_ll from{};
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(fd_, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n < 14 || from.sll_pkttype == PACKET_OUTGOING) continue;
    const uint16_t type = Get16(buf + 12);
    const uint8_t* ip = buf + 14;
    const uint8_t *src, *dst, *tcp;
    if (!v6_ && type == ETH_P_IP && n >= 14 + 20 + 20 && ip[9] == IPPROTO_TCP) {
      src = ip + 12;
      dst = ip + 16;
      tcp = ip + (ip[0] & 0xf) * 4;
    } else if (v6_ && type == ETH_P_IPV6 && n >= 14 + 40 + 20 && ip[6] == IPPROTO_TCP) {
      src = ip + 8;
      dst = ip + 24;
      tcp = ip + 40;
    } else {
      continue;
    }
    if (std::memcmp(dst, ip_, v6_ ? 16 : 4) != 0 || Get16(tcp + 2) != port_ ||
        tcp + 20 > buf + n)
      continue;
    const uint8_t flags = tcp[13];
    const uint16_t peer_port = Get16(tcp);
    const uint32_t peer_seq = Get32(tcp + 4);
    if ((flags & (kSyn | kAck)) == kSyn) {
      Send(buf + 6, src, peer_port, kIsn, peer_seq + 1, kSyn | kAck, "", -1);
    } else if ((flags & kAck) && Get32(tcp + 8) == kIsn + 1 && !(flags & kSyn) &&
               tcp + (tcp[12] >> 4) * 4 == buf + n) {
      // The handshake's last ACK (no data, nothing of ours acknowledged yet): the data.
      handshakes_++;
      for (const RawSegment& s : segments_)
        Send(buf + 6, src, peer_port, kIsn + 1 + static_cast<uint32_t>(s.rel_seq), peer_seq,
             kAck | kPsh, s.payload, s.urg, s.frag);
    }
  }
}

std::string ReadBanner(Topology& t, const std::string& addr, uint16_t port, int timeout_ms) {
  std::string got;
  InNetns(t.host(), [&] {
    const bool v6 = addr.find(':') != std::string::npos;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_storage ss{};
    socklen_t len;
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr);
      len = sizeof(*a);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      inet_pton(AF_INET, addr.c_str(), &a->sin_addr);
      len = sizeof(*a);
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
      char b[512];
      while (std::chrono::steady_clock::now() < deadline) {
        ssize_t n = recv(fd, b, sizeof(b), 0);
        if (n <= 0) break;
        got.append(b, static_cast<size_t>(n));
        size_t ssh = got.find("SSH-");
        if (ssh != std::string::npos && got.find("\r\n", ssh) != std::string::npos) break;
      }
    }
    close(fd);
  });
  return got;
}

}  // namespace bw::test
