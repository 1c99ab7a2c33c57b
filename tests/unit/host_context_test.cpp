// HostContext's pure parts: the bw_socks key of an event (local and remote by direction) and the
// executable path of a bw_exes record (components from the file up, joined the other way).
#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>

#include "daemon/host/host_context.hpp"

namespace bw {
namespace {

bw_exe Record(const std::string& bytes, uint8_t flags = BW_EXE_COMPLETE) {
  bw_exe e{};
  std::memcpy(e.path, bytes.data(), bytes.size());
  e.len = static_cast<uint16_t>(bytes.size());
  e.flags = flags;
  return e;
}

}  // namespace

TEST_CASE("host context: an executable record reads as the path, or not at all") {
  using namespace std::string_literals;
  CHECK(ExePathOfRecord(Record("ssh\0bin\0usr\0"s)) == "/usr/bin/ssh");
  CHECK(ExePathOfRecord(Record("init\0"s)) == "/init");
  // A walk cut short (too deep, too long) gives nothing rather than a wrong half path.
  CHECK(ExePathOfRecord(Record("ssh\0bin\0"s, 0)).empty());
  // Malformed: no NUL after the last component, an empty component, nothing at all, too long.
  CHECK(ExePathOfRecord(Record("ssh\0bin"s)).empty());
  CHECK(ExePathOfRecord(Record("ssh\0\0usr\0"s)).empty());
  CHECK(ExePathOfRecord(Record(""s)).empty());
  bw_exe big = Record("x\0"s);
  big.len = BW_EXE_PATH + 1;
  CHECK(ExePathOfRecord(big).empty());
}

TEST_CASE("host context: an event's connection key takes local and remote by direction") {
  bw_event ev{};
  ev.family = BW_FAMILY_V4;
  const uint8_t a[4] = {198, 51, 100, 1}, b[4] = {203, 0, 113, 9};
  std::memcpy(ev.saddr, a, 4);
  std::memcpy(ev.daddr, b, 4);
  ev.sport = htons(40000);
  ev.dport = htons(443);
  ev.direction = BW_DIR_EGRESS;  // this host sent it: the source is local
  bw_sock_key k = SockKeyOfEvent(ev);
  CHECK(std::memcmp(k.laddr, a, 4) == 0);
  CHECK(std::memcmp(k.raddr, b, 4) == 0);
  CHECK(k.lport == htons(40000));
  CHECK(k.rport == htons(443));
  CHECK(k.family == BW_FAMILY_V4);
  ev.direction = BW_DIR_INGRESS;  // received: the destination is local
  k = SockKeyOfEvent(ev);
  CHECK(std::memcmp(k.laddr, b, 4) == 0);
  CHECK(k.lport == htons(443));
  CHECK(k.rport == htons(40000));
}

}  // namespace bw
