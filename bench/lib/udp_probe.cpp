#include "bench/lib/udp_probe.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "bench/lib/bpfbench.hpp"
#include "bench/lib/sys.hpp"
#include "maps/maps.hpp"

namespace bw::bench {
namespace {

struct Payload {
  uint64_t session;
  uint64_t seq;
};

constexpr uint16_t kSrcPort = 40000;

}  // namespace

absl::StatusOr<std::unique_ptr<UdpProbe>> UdpProbe::Create(const std::string& send_ns,
                                                           const std::string& recv_ns,
                                                           uint32_t dst, uint16_t port) {
  std::unique_ptr<UdpProbe> p(new UdpProbe());
  p->dst_ = dst;
  p->port_ = port;
  // A socket belongs to the namespace it was made in, whichever thread uses it later.
  absl::Status st = InNetns(send_ns, [&]() -> absl::Status {
    p->send_fd_ = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);  // IP_HDRINCL implied
    if (p->send_fd_ < 0) return ErrnoStatus("probe sender", "socket(SOCK_RAW)", errno);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  st = InNetns(recv_ns, [&]() -> absl::Status {
    p->recv_fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (p->recv_fd_ < 0) return ErrnoStatus("probe receiver", "socket(SOCK_DGRAM)", errno);
    int one = 1, buf = 8 << 20;
    setsockopt(p->recv_fd_, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    setsockopt(p->recv_fd_, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf));
    timeval tv{0, 100000};
    setsockopt(p->recv_fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(p->recv_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
      return ErrnoStatus(absl::StrCat("probe receiver :", port), "bind", errno);
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  UdpProbe* raw = p.get();
  p->receiver_ = std::thread([raw] { raw->RecvLoop(); });
  return p;
}

UdpProbe::~UdpProbe() {
  End();
  stop_recv_ = true;
  if (receiver_.joinable()) receiver_.join();
  if (send_fd_ >= 0) close(send_fd_);
  if (recv_fd_ >= 0) close(recv_fd_);
}

void UdpProbe::Begin(const std::vector<uint32_t>& sources, double interval_s) {
  End();
  uint64_t session;
  {
    std::lock_guard<std::mutex> l(mu_);
    session = (static_cast<uint64_t>(getpid()) << 32) | ++sessions_;
    session_ = session;
    n_ = sources.size();
    sent_at_.clear();
    last_arrived_.assign(n_, -1);
    arrived_.assign(n_, {});
    error_.clear();
  }
  stop_send_ = false;
  sender_ = std::thread([this, session, sources, interval_s] { SendLoop(session, sources, interval_s); });
}

void UdpProbe::End() {
  stop_send_ = true;
  if (sender_.joinable()) sender_.join();
}

void UdpProbe::SendLoop(uint64_t session, std::vector<uint32_t> sources, double interval_s) {
  if (sources.empty()) return;
  struct {
    iphdr ip;
    udphdr udp;
    Payload pl;
  } __attribute__((packed)) pkt{};
  pkt.ip.version = 4;
  pkt.ip.ihl = 5;
  pkt.ip.ttl = 64;
  pkt.ip.protocol = IPPROTO_UDP;
  pkt.ip.frag_off = htons(IP_DF);
  pkt.ip.daddr = htonl(dst_);
  pkt.ip.tot_len = htons(sizeof(pkt));  // the kernel fills tot_len, id and the checksum anyway
  pkt.udp.source = htons(kSrcPort);
  pkt.udp.dest = htons(port_);
  pkt.udp.len = htons(sizeof(pkt.udp) + sizeof(pkt.pl));
  pkt.udp.check = 0;  // none (IPv4 allows it)
  pkt.pl.session = session;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(dst_);

  const double t0 = MonotonicSeconds();
  double next = t0;
  for (uint64_t k = 0; !stop_send_.load() && !Stopped(); ++k) {
    double now = MonotonicSeconds();
    if (next > now) {
      double wait = next - now;
      timespec ts{static_cast<time_t>(wait), static_cast<long>((wait - std::floor(wait)) * 1e9)};
      nanosleep(&ts, nullptr);
    } else if (now - next > 0.05) {
      next = now;  // stalled (the machine was busy): carry on from now instead of a burst
    }
    next += interval_s;
    size_t i = k % sources.size();
    pkt.ip.saddr = htonl(sources[i]);
    pkt.pl.seq = k;
    {
      std::lock_guard<std::mutex> l(mu_);
      sent_at_.push_back(MonotonicSeconds());
    }
    if (sendto(send_fd_, &pkt, sizeof(pkt), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
      int e = errno;
      std::lock_guard<std::mutex> l(mu_);
      if (error_.empty()) error_ = absl::StrCat("sendto: ", std::strerror(e));
    }
  }
}

void UdpProbe::RecvLoop() {
  while (!stop_recv_.load()) {
    Payload pl{};
    char ctl[CMSG_SPACE(sizeof(uint32_t))];
    iovec iov{&pl, sizeof(pl)};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof(ctl);
    ssize_t n = recvmsg(recv_fd_, &m, 0);
    if (n < 0) continue;  // timeout (checks stop_recv_) or EINTR
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
        uint32_t v;
        std::memcpy(&v, CMSG_DATA(c), sizeof(v));
        overflows_ = v;
      }
    if (n != static_cast<ssize_t>(sizeof(pl))) continue;
    std::lock_guard<std::mutex> l(mu_);
    if (pl.session != session_ || n_ == 0 || pl.seq >= sent_at_.size()) continue;
    size_t i = pl.seq % n_;
    arrived_[i].push_back(pl.seq);
    if (static_cast<int64_t>(pl.seq) > last_arrived_[i]) last_arrived_[i] = static_cast<int64_t>(pl.seq);
  }
}

std::optional<double> UdpProbe::DroppedSince(size_t i, double quiet) const {
  std::lock_guard<std::mutex> l(mu_);
  if (i >= n_) return std::nullopt;
  uint64_t first = last_arrived_[i] < 0 ? i : static_cast<uint64_t>(last_arrived_[i]) + n_;
  if (first >= sent_at_.size()) return std::nullopt;
  double t = sent_at_[first];
  if (MonotonicSeconds() - t < quiet) return std::nullopt;
  return t;
}

std::optional<double> UdpProbe::FirstArrivalSentAfter(size_t i, double t) const {
  std::lock_guard<std::mutex> l(mu_);
  if (i >= n_) return std::nullopt;
  std::optional<double> best;
  const auto& a = arrived_[i];
  // Newest first; datagrams may arrive a little out of order, so look a second past `t`.
  for (size_t k = a.size(); k-- > 0;) {
    double s = sent_at_[a[k]];
    if (s >= t && (!best || s < *best)) best = s;
    if (s < t - 1) break;
  }
  return best;
}

uint64_t UdpProbe::Arrivals(size_t i) const {
  std::lock_guard<std::mutex> l(mu_);
  return i < arrived_.size() ? arrived_[i].size() : 0;
}

uint64_t UdpProbe::Sent() const {
  std::lock_guard<std::mutex> l(mu_);
  return sent_at_.size();
}

std::string UdpProbe::last_error() const {
  std::lock_guard<std::mutex> l(mu_);
  return error_;
}

}  // namespace bw::bench
