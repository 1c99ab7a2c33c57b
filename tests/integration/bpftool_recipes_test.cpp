// The README's bpftool recipes, run against a live daemon: every command in the README's recipes
// block must be one this test knows and runs (so the README cannot drift from what works).
#include <catch2/catch.hpp>
#include <regex>
#include <sstream>

#include "lib/netns.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

const char* kPolicy = R"(ports: [443]
banner: {server: alert, client: drop}
lists:
  - name: seed-2013-09
    action: watch
    entries: [37.9.53.0/24, 37.9.53.40]
)";

std::vector<std::string> ReadmeRecipes() {
  std::string readme = ReadFile(std::string(BW_SOURCE_DIR) + "/README.md");
  auto b = readme.find("<!-- recipes:begin -->");
  auto e = readme.find("<!-- recipes:end -->");
  REQUIRE(b != std::string::npos);
  REQUIRE(e != std::string::npos);
  std::istringstream ss(readme.substr(b, e - b));
  std::vector<std::string> cmds;
  std::string line;
  while (std::getline(ss, line))
    if (line.rfind("bpftool ", 0) == 0) cmds.push_back(line);
  return cmds;
}

TEST_CASE("the README's bpftool recipes answer an operator's questions on a live daemon") {
  // Each recipe, and what its output must show with kPolicy loaded.
  const std::vector<std::pair<std::string, std::vector<std::string>>> expect = {
      {"bpftool map lookup pinned /sys/fs/bpf/bannerwatch/bw_watch_v4 key 32 0 0 0 37 9 53 40",
       {"\"action\": 1", "\"prefixlen\": 32", "\"hits\": 0"}},
      {"bpftool net show dev eth0", {"bw_tc_egress", "clsact/egress", "xdp"}},
      {"bpftool link show pinned /sys/fs/bpf/bannerwatch/link_xdp_eth0", {"xdp", "prog"}},
      {"bpftool map dump pinned /sys/fs/bpf/bannerwatch/bw_counters",
       {"\"packets\":", "\"banner_server\":", "\"events_lost\":"}},
      {"bpftool map dump pinned /sys/fs/bpf/bannerwatch/bw_watch_v4",
       {"\"addr\": [37,9,53,0", "\"addr\": [37,9,53,40", "\"drops\": 0"}},
      {"bpftool map lookup pinned /sys/fs/bpf/bannerwatch/bw_ports key 0xbb 0x01 0 0",
       {"\"key\": 443", "\"value\": 1"}},
      {"bpftool map dump pinned /sys/fs/bpf/bannerwatch/bw_config",
       {"\"banner_action\": [1,2", "\"block_event_interval_ns\": 1000000000"}},
  };
  std::vector<std::string> readme = ReadmeRecipes();
  REQUIRE(readme.size() == expect.size());
  for (size_t i = 0; i < expect.size(); ++i) CHECK(readme[i] == expect[i].first);

  Topology t;
  Daemon d(t, kPolicy);
  d.Start();
  for (const auto& [cmd, wants] : expect) {
    std::string c = std::regex_replace(cmd, std::regex("/sys/fs/bpf/bannerwatch"), d.pin_root());
    c = std::regex_replace(c, std::regex("eth0"), kHostIf);
    int st = 0;
    std::string out = t.host().Out(c + " 2>&1", &st);
    INFO(c << "\n" << out);
    CHECK(st == 0);
    for (const std::string& w : wants) CHECK(out.find(w) != std::string::npos);
  }
}

}  // namespace
}  // namespace bw::test
