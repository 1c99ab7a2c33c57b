#include "lib/probe.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>

#include "daemon/dataplane/attach.hpp"
#include "daemon/dataplane/prog_test_run.hpp"
#include "lib/packet.hpp"
#include "maps/maps.hpp"

namespace bw::test {

void InNetns(Netns& ns, const std::function<void()>& fn) {
  int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(("/var/run/netns/" + ns.name()).c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(self >= 0);
  REQUIRE(target >= 0);
  REQUIRE(setns(target, CLONE_NEWNET) == 0);
  fn();
  REQUIRE(setns(self, CLONE_NEWNET) == 0);
  close(self);
  close(target);
}

UdpReceiver::UdpReceiver(Netns& ns, const char* addr, uint16_t port) {
  int b = -1;
  InNetns(ns, [&] {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, addr, &a.sin_addr);
    b = bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  });
  REQUIRE(b == 0);
}

UdpReceiver::~UdpReceiver() { close(fd_); }

int UdpReceiver::Drain() {
  char buf[2048];
  int n = 0;
  while (recv(fd_, buf, sizeof(buf), 0) >= 0) ++n;
  return n;
}

UdpFlood::UdpFlood(Netns& ns, const char* addr, uint16_t port, const std::string& count_file,
                   const char* from)
    : count_file_(count_file) {
  pid_ = fork();
  if (pid_ == 0) {
    int target = open(("/var/run/netns/" + ns.name()).c_str(), O_RDONLY);
    if (target < 0 || setns(target, CLONE_NEWNET) != 0) _exit(3);
    static volatile sig_atomic_t stop = 0;
    signal(SIGTERM, [](int) { stop = 1; });
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (from) {
      sockaddr_in s{};
      s.sin_family = AF_INET;
      inet_pton(AF_INET, from, &s.sin_addr);
      if (bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof(s)) != 0) _exit(4);
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, addr, &a.sin_addr);
    uint64_t sent = 0;
    while (!stop) {
      if (sendto(fd, "bannerwatch", 11, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 11)
        ++sent;
      usleep(100);
    }
    FILE* f = fopen(count_file_.c_str(), "w");
    if (f) {
      fprintf(f, "%llu\n", static_cast<unsigned long long>(sent));
      fclose(f);
    }
    _exit(0);
  }
}

uint64_t UdpFlood::Stop() {
  if (pid_ <= 0) return 0;
  kill(pid_, SIGTERM);
  int st;
  waitpid(pid_, &st, 0);
  pid_ = -1;
  return std::stoull("0" + ReadFile(count_file_));
}

Fd LiveXdpProgram(Daemon& d) {
  auto link = OpenPinnedObject(XdpLinkPin(d.pin_root(), kHostIf));
  REQUIRE(link.ok());
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  REQUIRE(bpf_obj_get_info_by_fd(link->get(), &info, &len) == 0);
  Fd prog(bpf_prog_get_fd_by_id(info.prog_id));
  REQUIRE(prog.valid());
  return prog;
}

void ProduceBannerEvents(Daemon& d, uint32_t runs, uint16_t dst_port) {
  Fd prog = LiveXdpProgram(d);
  Bytes frame = PacketBuilder()
                    .ipv4("203.0.113.7", kHostV4)
                    .tcp(443, dst_port)
                    .payload("SSH-2.0-OpenSSH_9.2p1\r\n")
                    .build();
  for (uint32_t i = 0; i < runs; ++i) {
    auto r = RunFrame(prog.get(), /*xdp=*/true, frame);
    REQUIRE(r.ok());
  }
}

}  // namespace bw::test
