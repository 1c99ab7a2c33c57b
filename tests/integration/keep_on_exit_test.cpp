// keep_on_exit as the policy in force at the stop says (daemon/service/daemon.cpp, Shutdown):
// on, a stop leaves the programs attached and the next daemon takes over; turned off by a reload,
// the next stop detaches. `systemctl restart` then `reload` and `stop` rely on it (tests/vm/bw-vm
// service runs that under systemd).
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "lib/netns.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

bool XdpOn(Topology& t) {
  return t.host().Run(std::string("ip link show dev ") + kHostIf + " | grep -q xdp") == 0;
}

TEST_CASE("keep_on_exit follows the policy in force: kept at a stop, then off by a reload, detached") {
  Topology t;
  Daemon d(t, "ports: [443]\nkeep_on_exit: true\n");
  d.Start();
  REQUIRE(XdpOn(t));
  CHECK(d.Stop() == 0);
  CHECK(XdpOn(t));  // kept: enforcement stays while no daemon runs
  d.Start();        // takes over what the first one left
  CHECK(d.Status()["interfaces"][0]["adopted"] == true);
  d.WritePolicy("ports: [443]\nkeep_on_exit: false\n");
  int ok_before = d.Status()["last_reload"]["reloads_ok"];
  REQUIRE(::kill(d.Status()["pid"].get<int>(), SIGHUP) == 0);
  REQUIRE(WaitFor([&] { return d.Status()["last_reload"]["reloads_ok"] > ok_before; },
                  5000 * TimeScale()));
  CHECK(d.Stop() == 0);
  CHECK_FALSE(XdpOn(t));
  CHECK((!std::filesystem::exists(d.pin_root()) || std::filesystem::is_empty(d.pin_root())));
  CHECK(t.host().Run(std::string("tc filter show dev ") + kHostIf + " egress | grep -q bpf") != 0);
}

}  // namespace
}  // namespace bw::test
