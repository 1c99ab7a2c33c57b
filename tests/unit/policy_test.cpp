// The YAML policy (daemon/policy/policy.hpp): the shipped policy loads, every key parses, every error names
// file:line, and compilation gets precedence, specificity, policy order, expiry and IPv4-mapped
// entries right (checked against a brute-force model on random policies too).
#include <stdlib.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "daemon/policy/policy.hpp"
#include "lib/test_util.hpp"

namespace bw {
namespace {

using test::TempDir;


Policy MustParse(const std::string& yaml, const std::string& path = "policy.yaml") {
  auto p = ParsePolicy(yaml, path);
  INFO(p.status());
  REQUIRE(p.ok());
  return *p;
}

CompiledPolicy MustCompile(const Policy& p, absl::Time now = absl::Now()) {
  auto c = Compile(p, now);
  INFO(c.status());
  REQUIRE(c.ok());
  return *c;
}

const KernelEntry& Kernel(const CompiledPolicy& c, const std::string& prefix) {
  Prefix p = *ParsePrefix(prefix, {.allow_default_route = true});
  const auto& t = p.is_v4() ? c.v4 : c.v6;
  for (const KernelEntry& e : t)
    if (e.prefix == p) return e;
  FAIL("no kernel entry for " << prefix);
  static KernelEntry none;
  return none;
}

std::string ListOf(const CompiledPolicy& c, const KernelEntry& e) { return c.list(e.value.list_id)->name; }
std::string DecidingPrefix(const CompiledPolicy& c, const KernelEntry& e) {
  return c.entry(e.value.entry_ref)->prefix.ToString();
}

TEST_CASE("policy: the shipped default policy loads and tells the seed's story") {
  auto p = LoadPolicyFile(BW_DEFAULT_POLICY);
  INFO(p.status());
  REQUIRE(p.ok());
  CHECK(p->ports == std::vector<uint16_t>{443});
  CHECK(p->banner_server == BW_BANNER_ALERT);
  CHECK(p->banner_client == BW_BANNER_ALERT);
  CHECK_FALSE(p->allow_default_route);
  CHECK_FALSE(p->keep_reload_buffers);  // a host agent's memory first (BENCHMARKS.md part 3)
  CHECK(p->unparsed == BW_UNPARSED_ALERT);
  REQUIRE(p->lists.size() == 1);
  const ListSpec& l = p->lists[0];
  CHECK(l.name == "seed-2013-09");
  CHECK(l.action == ListAction::kWatch);
  CHECK(l.entries.size() == 6);  // the /24 and the five hosts
  CompiledPolicy c = MustCompile(*p);
  CHECK(c.v4.size() == 6);
  CHECK(c.v6.empty());
  for (const char* host : {"37.9.53.12", "37.9.53.40", "37.9.53.97", "37.9.53.106", "37.9.53.107"}) {
    const KernelEntry& e = Kernel(c, host);
    CHECK(e.value.action == BW_ACTION_WATCH);
    CHECK(ListOf(c, e) == "seed-2013-09");
    CHECK(c.EntryLocation(e.value.entry_ref).find("watchlists/seed-2013-09.txt:") != std::string::npos);
  }
  const KernelEntry* m = c.Lookup(*ParseAddress("37.9.53.200"));
  REQUIRE(m);
  CHECK(m->prefix.ToString() == "37.9.53.0/24");
  CHECK(c.Lookup(*ParseAddress("37.9.54.1")) == nullptr);
  CHECK(c.config.banner_action[BW_SIDE_SERVER] == BW_BANNER_ALERT);
  CHECK(c.config.block_event_interval_ns == 1000000000ull);
  CHECK(c.config.block_event_budget == BW_BLOCK_EVENT_BUDGET_DEFAULT);
  CHECK(c.config.unparsed == BW_UNPARSED_ALERT);
}

TEST_CASE("policy: the example lists in every format load") {
  const std::string yaml = absl::StrCat(
      "lists:\n"
      "  - name: drop\n    action: block\n    files: [", BW_SOURCE_DIR, "/policies/watchlists/example-drop.txt]\n"
      "  - name: drop-json\n    action: block\n    files: [", BW_SOURCE_DIR, "/policies/watchlists/example-drop.json]\n"
      "  - name: firehol\n    action: watch\n    files: [", BW_SOURCE_DIR, "/policies/watchlists/example.netset]\n");
  Policy p = MustParse(yaml);
  REQUIRE(p.lists.size() == 3);
  CHECK(p.lists[0].files[0].detected == FeedFormat::kSpamhausDrop);
  CHECK(p.lists[1].files[0].detected == FeedFormat::kSpamhausDropJson);
  CHECK(p.lists[2].files[0].detected == FeedFormat::kFirehol);
  CHECK(p.lists[0].entries[0].source_id == "SBL000001");
  CHECK(p.lists[2].entries[0].source_id == "reputation");
  for (const ListSpec& l : p.lists)
    for (const PolicyEntry& e : l.entries) {
      // Documentation ranges only.
      std::string s = e.prefix.ToString();
      bool doc = s.rfind("198.51.100.", 0) == 0 || s.rfind("203.0.113.", 0) == 0 ||
                 s.rfind("2001:db8:", 0) == 0;
      CHECK(doc);
    }
}

TEST_CASE("policy: every key parses") {
  TempDir d("bw-policy");
  d.Write("lists/extra.txt", "# extra\n198.51.100.0/24\n");
  d.Write("lists/drop.feed", "; drop\n203.0.113.0/24 ; SBL000002\n");
  std::string path = d.Write("policy.yaml", R"(
ports: [443, 8443, 22]
banner: { server: drop, client: off }
allow_default_route: true
keep_on_exit: true
keep_reload_buffers: true
limits: { v4_entries: 1000, v6_entries: 100 }
block_event_interval: 250ms
block_event_budget: 50
interfaces: [eth0, ens3]
output: { eve: logs/eve.json, stdout: true, syslog: { socket: /run/log.sock, facility: daemon, level: notice } }
eve: { host: sensor-fra-1, community_id_seed: 65535, schema: suricata-7 }
host: { attribution: false, refuse: false, cgroup: /sys/fs/cgroup/bw, event_budget: 7 }
beacon: { enabled: true, connections: all, min_connections: 12, threshold: 0.85, window: 32, full_count: 16, realert: 30m, idle: 2h, max_pairs: 100 }
control_socket: /run/bw.sock
metrics: "[::1]:9470"
state_file: off
pin_root: /sys/fs/bpf/bw-test
lists:
  - name: everything
    action: watch
    entries: [0.0.0.0/0]
  - name: seed-2013-09
    action: block
    tags: [exfil, beaconing]
    reason: "security mailing list tip, 2013-09-11"
    expires: 2027-01-01T00:00:00Z
    entries: [37.9.53.0/24, "2001:db8::/32"]
    files:
      - lists/extra.txt
      - { path: lists/drop.feed, format: spamhaus-drop }
unparsed: drop
)");
  auto p = LoadPolicyFile(path);
  INFO(p.status());
  REQUIRE(p.ok());
  CHECK(p->ports == std::vector<uint16_t>{443, 8443, 22});
  CHECK(p->banner_server == BW_BANNER_DROP);
  CHECK(p->banner_client == BW_BANNER_OFF);
  CHECK(p->allow_default_route);
  CHECK(p->keep_on_exit);
  CHECK(p->keep_reload_buffers);
  CHECK(p->unparsed == BW_UNPARSED_DROP);
  CHECK(p->v4_entries == 1000u);
  CHECK(p->v6_entries == 100u);
  CHECK(p->block_event_interval == absl::Milliseconds(250));
  CHECK(p->block_event_budget == 50u);
  CHECK(p->interfaces == std::vector<std::string>{"eth0", "ens3"});
  CHECK(p->eve_path == d.path() + "/logs/eve.json");
  CHECK(p->eve_stdout);
  CHECK(p->eve_syslog.on);
  CHECK(p->eve_syslog.socket == "/run/log.sock");
  CHECK(p->eve_syslog.facility == 3);
  CHECK(p->eve_syslog.severity == 5);
  CHECK(p->eve.host == "sensor-fra-1");
  CHECK(p->eve.community_id_seed == 65535);
  CHECK(p->eve.suricata7);
  CHECK_FALSE(p->host.attribution);
  CHECK_FALSE(p->host.refuse);
  CHECK(p->host.cgroup == "/sys/fs/cgroup/bw");
  CHECK(p->host.event_budget == 7u);
  CHECK(p->beacon.on);
  CHECK(p->beacon.all_connections);
  CHECK(p->beacon.options.min_connections == 12u);
  CHECK(p->beacon.options.threshold == 0.85);
  CHECK(p->beacon.options.window == 32u);
  CHECK(p->beacon.options.full_count == 16u);
  CHECK(p->beacon.options.realert == absl::Minutes(30));
  CHECK(p->beacon.options.idle == absl::Hours(2));
  CHECK(p->beacon.options.max_pairs == 100u);
  CHECK(p->control_socket == "/run/bw.sock");
  CHECK(p->metrics_listen == "[::1]:9470");
  CHECK(p->state_file.empty());
  CHECK(p->pin_root == "/sys/fs/bpf/bw-test");
  REQUIRE(p->lists.size() == 2);
  const ListSpec& l = p->lists[1];
  CHECK(l.tags == std::vector<std::string>{"exfil", "beaconing"});
  CHECK(l.reason == "security mailing list tip, 2013-09-11");
  REQUIRE(l.expires.has_value());
  CHECK(*l.expires == absl::FromCivil(absl::CivilSecond(2027, 1, 1, 0, 0, 0), absl::UTCTimeZone()));
  REQUIRE(l.entries.size() == 4);
  CHECK(l.entries[0].file == 0u);  // inline entries: the policy file
  CHECK(l.entries[0].line == 28u);
  CHECK(p->files[l.entries[2].file] == d.path() + "/lists/extra.txt");
  CHECK(l.entries[2].line == 2u);
  CHECK(l.entries[3].source_id == "SBL000002");
  CHECK(l.files[1].format == FeedFormat::kSpamhausDrop);

  // Defaults when keys are absent.
  Policy m = MustParse("lists: []\n");
  CHECK(m.ports == std::vector<uint16_t>{443});
  CHECK(m.banner_server == BW_BANNER_ALERT);
  CHECK(m.v4_entries == BW_V4_ENTRIES_DEFAULT);
  CHECK(m.block_event_interval == absl::Seconds(1));
  CHECK(m.block_event_budget == BW_BLOCK_EVENT_BUDGET_DEFAULT);
  CHECK(m.eve_path == "/var/log/bannerwatch/eve.json");
  CHECK(m.eve.host.empty());  // the host name, when records are written
  CHECK(m.eve.community_id_seed == 0);
  CHECK_FALSE(m.eve.suricata7);
  CHECK(m.host.attribution);
  CHECK(m.host.refuse);
  CHECK(m.host.cgroup.empty());
  CHECK(m.beacon.on);
  CHECK_FALSE(m.beacon.all_connections);
  CHECK(m.beacon.options.min_connections == 10u);
  CHECK(m.beacon.options.threshold == 0.8);
  CHECK(m.metrics_listen == "127.0.0.1:9464");
  CHECK(MustParse("metrics: off\n").metrics_listen.empty());
  CHECK(m.pin_root == BW_PIN_ROOT_DEFAULT);
  CHECK(MustParse("ports: []\n").ports.empty());
  CHECK(m.proxy_ports == std::vector<uint16_t>{3128, 8080, 8888});
  CHECK_FALSE(m.non_tls);
  {
    Policy q = MustParse("proxy_ports: [8888, 3128]\nbanner:\n  non_tls: alert\nlists: []\n");
    CHECK(q.non_tls);
    auto c = Compile(q);
    REQUIRE(c.ok());
    CHECK(c->proxy_ports == std::vector<uint16_t>{3128, 8888});
    CHECK(c->config.flags == BW_CFG_NON_TLS);
    CHECK(Compile(m)->config.flags == 0);
  }
}

struct BadRow {
  std::string yaml;
  int line;
  std::string says;
};

void CheckBad(const BadRow& r, const std::string& path = "policy.yaml") {
  auto p = ParsePolicy(r.yaml, path);
  INFO("policy:\n" << r.yaml);
  REQUIRE_FALSE(p.ok());
  std::string m(p.status().message());
  INFO("message: " << m);
  CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(m.rfind(path + ":" + std::to_string(r.line) + ": ", 0) == 0);
  CHECK(m.find(r.says) != std::string::npos);
}

TEST_CASE("policy: every error names file:line and what is wrong") {
  const std::string list = "lists:\n  - name: a\n    action: watch\n";
  const std::vector<BadRow> rows = {
      // structure and syntax
      {"", 1, "the policy is empty"},
      {"# only a comment\n", 1, "the policy is empty"},
      {"- 1\n- 2\n", 1, "expected a mapping, got a sequence"},
      {"ports: [443\nbanner: {}\n", 2, "YAML syntax error"},
      {"ports: [443]\n---\nports: [22]\n", 3, "more than one YAML document"},
      {"prots: [443]\n", 1, "unknown key 'prots' (did you mean 'ports'?)"},
      {"ports: [443]\nports: [22]\n", 2, "ports: duplicate key (first on line 1)"},
      {std::string("ports: [443]\0", 13), 1, "binary data"},
      // ports
      {"ports: 443\n", 1, "ports: expected a sequence of TCP port numbers, got a scalar"},
      {"ports:\n", 1, "ports: no value"},
      {"lists:\n  - name: a\n    action:\n    entries: []\n", 3, "lists[0].action: no value"},
      {"ports: [443, 0]\n", 1, "ports[1]: 0 is out of range (1..65535)"},
      {"ports: [65536]\n", 1, "65536 is out of range"},
      {"ports: [-1]\n", 1, "'-1' is not a decimal integer"},
      {"ports: [\"443\"]\n", 1, "expected an integer, got a quoted string"},
      {"ports: [0443]\n", 1, "has a leading zero"},
      {"ports: [https]\n", 1, "'https' is not a decimal integer"},
      {"ports:\n  - 443\n  - 8443\n  - 443\n", 4, "ports[2]: port 443 is listed twice"},
      // banner
      {"banner:\n  server: alrt\n", 2, "banner.server: 'alrt' is not one of off, alert, drop"},
      {"banner:\n  server: alert\n  clinet: drop\n", 3, "unknown key 'clinet' (did you mean 'client'?)"},
      {"banner: alert\n", 1, "banner: expected a mapping, got a scalar"},
      {"banner:\n  server: [drop]\n", 2, "expected a string, got a sequence"},
      // booleans
      {"keep_on_exit: yes\n", 1, "keep_on_exit: expected true or false, got 'yes'"},
      {"keep_reload_buffers: 1\n", 1, "keep_reload_buffers: expected true or false, got '1'"},
      {"unparsed: block\n", 1, "unparsed: 'block' is not one of pass, alert, drop"},
      {"allow_default_route: \"true\"\n", 1, "expected true or false, got a quoted string"},
      {"output:\n  stdout: 1\n", 2, "output.stdout: expected true or false"},
      // limits and durations
      {"limits: { v4_entries: 0 }\n", 1, "limits.v4_entries: 0 is out of range"},
      {"limits:\n  v6_entries: lots\n", 2, "limits.v6_entries: 'lots' is not a decimal integer"},
      {"limits:\n  v8_entries: 1\n", 2, "unknown key 'v8_entries'"},
      {"limits: { v4_entries: 4294967296 }\n", 1, "out of range"},
      // A trie of 4294967295 entries was once created on request.
      {"limits: { v4_entries: 4294967295 }\n", 1, "limits.v4_entries: 4294967295 is out of range (1..16777216)"},
      {"limits: { v6_entries: 4194305 }\n", 1, "limits.v6_entries: 4194305 is out of range (1..4194304)"},
      {"limits: { file_bytes: 100 }\n", 1, "limits.file_bytes: 100 is out of range (1024..4294967296)"},
      {"block_event_interval: 1 parsec\n", 1, "is not a duration such as 1s"},
      {"block_event_interval: -1s\n", 1, "is not a duration"},
      {"block_event_interval: inf\n", 1, "is not a duration"},
      {"block_event_budget: -1\n", 1, "block_event_budget: '-1' is not a decimal integer"},
      {"block_event_budget: 4294967296\n", 1, "block_event_budget: 4294967296 is out of range"},
      {"block_event_budget: lots\n", 1, "is not a decimal integer"},
      {"proxy_ports: [8080, 8080]\n", 1, "port 8080 is listed twice"},
      {"proxy_ports: [0]\n", 1, "proxy_ports[0]"},
      {"banner:\n  non_tls: drop\n", 2, "banner.non_tls"},
      // daemon settings
      {"metrics: 9470\n", 1, "missing port"},
      {"metrics: \"::1:9470\"\n", 1, "an IPv6 address needs brackets"},
      {"metrics: 127.0.0.1:70000\n", 1, "port out of range"},
      {"metrics: 127.0.0.256:9470\n", 1, "greater than 255"},
      {"pin_root: bannerwatch\n", 1, "pin_root: expected an absolute path on bpffs"},
      {"interfaces: [eth0, eth0]\n", 1, "interface 'eth0' is listed twice"},
      {"interfaces: [averyveryverylongname0]\n", 1, "is not an interface name"},
      {"output:\n  eve: \"\"\n", 2, "output.eve: empty path (write off to disable)"},
      {"output:\n  file: x\n", 2, "unknown key 'file'"},
      {"output:\n  syslog: yes\n", 2, "output.syslog: expected true or false"},
      {"output:\n  syslog:\n    facility: local9\n", 3, "'local9' is not a syslog facility"},
      {"output:\n  syslog:\n    level: verbose\n", 3, "'verbose' is not a syslog level"},
      {"output:\n  syslog:\n    port: 514\n", 3, "unknown key 'port'"},
      {"eve:\n  schema: suricata\n", 2, "eve.schema: 'suricata' is not one of bannerwatch, suricata-7"},
      {"eve:\n  community_id_seed: 65536\n", 2, "eve.community_id_seed: 65536 is out of range"},
      {"eve:\n  host: \"\"\n", 2, "eve.host: expected a sensor name of 1 to 255 bytes"},
      {"eve:\n  seed: 1\n", 2, "unknown key 'seed'"},
      {"host:\n  refuse: maybe\n", 2, "host.refuse: expected true or false"},
      {"host:\n  cgroup: \"\"\n", 2, "host.cgroup: empty path"},
      {"host:\n  event_budget: -1\n", 2, "host.event_budget"},
      {"host:\n  block: true\n", 2, "unknown key 'block'"},
      {"beacon:\n  connections: some\n", 2, "beacon.connections: 'some' is not one of watched, all"},
      {"beacon:\n  threshold: 1.5\n", 2, "beacon.threshold: '1.5' is not a score above 0 and at most 1"},
      {"beacon:\n  threshold: 0\n", 2, "beacon.threshold: '0' is not a score"},
      {"beacon:\n  min_connections: 3\n", 2, "beacon.min_connections: 3 is out of range"},
      {"beacon:\n  realert: soon\n", 2, "beacon.realert: 'soon' is not a duration such as 1h or 30m"},
      {"beacon:\n  idle: 0s\n", 2, "beacon.idle: '0s' is not a duration"},
      {"beacon:\n  min_connections: 100\n  window: 64\n", 2, "beacon: min_connections 100 is above window 64"},
      {"control_socket: [a]\n", 1, "control_socket: expected a string"},
      // lists
      {"lists: {}\n", 1, "lists: expected a sequence of lists, got a mapping"},
      {"lists:\n  - action: watch\n    entries: []\n", 2, "lists[0]: missing key 'name'"},
      {"lists:\n  - name: a\n    entries: []\n", 2, "lists[0] (a): missing key 'action'"},
      {list, 2, "a list needs 'entries', 'files' or 'source'"},
      {list + "    entries: []\n    colour: red\n", 5, "lists[0]: unknown key 'colour'"},
      {list + "    entries: []\n    action: block\n", 5, "lists[0].action: duplicate key (first on line 3)"},
      {"lists:\n  - name: a\n    action: blok\n    entries: []\n", 3,
       "lists[0].action: 'blok' is not one of watch, block, safelist"},
      {"lists:\n  - name: \"a b\"\n    action: watch\n    entries: []\n", 2, "is not a list name"},
      {"lists:\n  - name: a\n    action: watch\n    entries: []\n  - name: a\n    action: block\n"
       "    entries: []\n",
       5, "lists[1].name: duplicate list name 'a'"},
      {list + "    tags: [x, x]\n    entries: []\n", 4, "tag 'x' is listed twice"},
      {list + "    tags: [\"two words\"]\n    entries: []\n", 4, "is not a tag"},
      {list + "    tags: x\n    entries: []\n", 4, "expected a sequence of tags"},
      {list + "    expires: 2027-01-01\n    entries: []\n", 4,
       "lists[0].expires: '2027-01-01' is not an RFC 3339 time"},
      {list + "    expires: tomorrow\n    entries: []\n", 4, "is not an RFC 3339 time"},
      {list + "    reason: [x]\n    entries: []\n", 4, "lists[0].reason: expected a string"},
      {list + "    entries: 37.9.53.0/24\n", 4, "expected a sequence of addresses or CIDR prefixes"},
      // prefixes, each on its own line
      {list + "    entries:\n      - 37.9.53.0/24\n      - 010.0.0.1\n", 6,
       "lists[0] (a).entries[1]: '010.0.0.1': IPv4 octet '010' has a leading zero"},
      {list + "    entries:\n      - 37.9.53.12/24\n", 5, "host bits set: the network is 37.9.53.0/24"},
      {list + "    entries: [1.2.3.0/33]\n", 4, "prefix length 33 is out of range for IPv4"},
      {list + "    entries: [\"2001:db8::/129\"]\n", 4, "prefix length 129 is out of range for IPv6"},
      {list + "    entries: [\"1.2.3.0/+24\"]\n", 4, "'+24' is not a decimal number"},
      {list + "    entries: [\"1.2.3.0/ 24\"]\n", 4, "whitespace"},
      {list + "    entries: [1.2.3.0/24x]\n", 4, "'24x' is not a decimal number"},
      {list + "    entries: [/24]\n", 4, "missing address before '/'"},
      {list + "    entries: [\"\"]\n", 4, "empty prefix"},
      {list + "    entries: [\"1.2.3.4\\x01\"]\n", 4, "non-printable byte 0x01"},
      {list + "    entries: [0.0.0.0/0]\n", 4, "set allow_default_route: true"},
      {list + "    entries: [[1.2.3.4]]\n", 4, "expected a string, got a sequence"},
      // files
      {list + "    files: [\"\"]\n", 4, "empty path"},
      {list + "    files:\n      - { format: plain }\n", 5, "missing key 'path'"},
      {list + "    files:\n      - { path: x.txt, format: csv }\n", 5,
       "'csv' is not a list format"},
      // limits
      {"limits: { v4_entries: 2 }\n" + list + "    entries: [198.51.100.1, 198.51.100.2, 198.51.100.3]\n", 1,
       "limits.v4_entries: the lists hold 3 distinct IPv4 prefixes, more than the limit 2"},
      {list + "    entries: [\"2001:db8::1\", \"2001:db8::2\"]\nlimits:\n  v6_entries: 1\n", 6,
       "the lists hold 2 distinct IPv6 prefixes, more than the limit 1"},
  };
  for (const BadRow& r : rows) CheckBad(r);
  // Duplicates do not count twice against the limit.
  MustParse("limits: { v4_entries: 2 }\n" + list + "    entries: [198.51.100.1, 198.51.100.2, 198.51.100.1]\n");
}

TEST_CASE("policy: list file errors name the list file's line and the policy line") {
  TempDir d("bw-policy");
  d.Write("w/bad.txt", "198.51.100.0/24\n# c\n198.51.100.256\n");
  d.Write("w/bin.txt", std::string("198.51.100.0/24\n\x00\x01", 18));
  std::string path = d.Write("p.yaml", "lists:\n  - name: a\n    action: block\n    files:\n      - w/bad.txt\n");
  auto p = LoadPolicyFile(path);
  REQUIRE_FALSE(p.ok());
  std::string m(p.status().message());
  INFO(m);
  CHECK(m.rfind(d.path() + "/w/bad.txt:3: '198.51.100.256': IPv4 octet 256 is greater than 255", 0) == 0);
  CHECK(m.find("(list 'a', named at " + path + ":5)") != std::string::npos);

  path = d.Write("p2.yaml", "lists:\n  - name: a\n    action: block\n    files: [w/missing.txt]\n");
  p = LoadPolicyFile(path);
  REQUIRE_FALSE(p.ok());
  m = std::string(p.status().message());
  INFO(m);
  CHECK(m.find(d.path() + "/w/missing.txt: cannot open") == 0);
  CHECK(m.find("named at " + path + ":4") != std::string::npos);

  path = d.Write("p3.yaml", "lists:\n  - name: a\n    action: block\n    files: [w/bin.txt]\n");
  p = LoadPolicyFile(path);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().message().find("bin.txt:2: binary data") != absl::string_view::npos);

  auto none = LoadPolicyFile(d.path() + "/nope.yaml");
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().message().find("nope.yaml: cannot open") != absl::string_view::npos);
}

TEST_CASE("policy: a reload re-reads list files and sees every change, however small") {
  TempDir d("bw-policy");
  std::string feed = d.Write("w/feed.txt", "198.51.100.0/24\n198.51.100.7\n");
  d.Write("w/other.txt", "203.0.113.0/24\n");
  std::string path = d.Write("p.yaml",
                             "lists:\n  - name: a\n    action: block\n    files: [w/feed.txt]\n"
                             "  - name: b\n    action: watch\n    files: [w/other.txt]\n");
  auto p1 = LoadPolicyFile(path);
  REQUIRE(p1.ok());
  struct stat st;
  REQUIRE(stat(feed.c_str(), &st) == 0);
  FeedCacheStats s0 = GetFeedCacheStats();
  // Same size, same modification time, one digit different.
  d.Write("w/feed.txt", "198.51.100.0/24\n198.51.100.8\n");
  timespec ts[2] = {st.st_mtim, st.st_mtim};
  REQUIRE(utimensat(AT_FDCWD, feed.c_str(), ts, 0) == 0);
  auto p2 = LoadPolicyFile(path);
  REQUIRE(p2.ok());
  FeedCacheStats s1 = GetFeedCacheStats();
  CHECK(s1.parses - s0.parses == 1);  // feed.txt; other.txt came from the cache
  CHECK(s1.hits - s0.hits == 1);
  REQUIRE(p2->lists[0].entries.size() == 2);
  CHECK(p2->lists[0].entries[1].prefix.ToString() == "198.51.100.8/32");
  CHECK(p2->lists[0].entries[1].line == 2u);
  CHECK(p2->lists[1].entries[0].prefix.ToString() == "203.0.113.0/24");
  CHECK(p2->lists[1].entries[0].file == 2u);
  // A bad rewrite is an error naming the file and line, every time it is loaded.
  d.Write("w/feed.txt", "198.51.100.0/24\n198.51.100.888\n");
  for (int i = 0; i < 2; ++i) {
    auto bad = LoadPolicyFile(path);
    REQUIRE_FALSE(bad.ok());
    CHECK(std::string(bad.status().message()).rfind(feed + ":2: ", 0) == 0);
  }
}

TEST_CASE("policy: a reload parsed into the replaced policy's storage equals a fresh parse") {
  TempDir d("bw-policy-reuse");
  std::string text = "# big enough for its table to be reused\n";
  for (uint32_t i = 0; i < 70000; ++i)
    absl::StrAppend(&text, "10.", (i >> 8) & 255, ".", i & 255, ".0/24\n");
  d.Write("feed.txt", text);
  std::string path = d.Write("p.yaml",
                             "lists:\n  - name: a\n    action: block\n    entries: [198.51.100.7]\n"
                             "    files: [feed.txt]\n");
  auto p1 = LoadPolicyFile(path);
  REQUIRE(p1.ok());
  REQUIRE(p1->lists[0].entries.size() == 70001);
  const PolicyEntry* storage = p1->lists[0].entries.data();
  d.Write("feed.txt", absl::StrCat(text, "203.0.113.0/24\n"));
  auto p2 = LoadPolicyFile(path, &*p1);
  REQUIRE(p2.ok());
  CHECK(p1->lists.empty());  // taken
  // The replaced table (room for 70001 entries, one more is needed): a new one. The next reload
  // fits in the one replaced now.
  CHECK(p2->lists[0].entries.data() != storage);
  Policy spare = std::move(*p2);
  storage = spare.lists[0].entries.data();
  d.Write("feed.txt", absl::StrCat(text, "203.0.113.0/25\n"));
  auto p3 = LoadPolicyFile(path, &spare);
  REQUIRE(p3.ok());
  CHECK(p3->lists[0].entries.data() == storage);
  PruneFeedCache({});
  auto fresh = LoadPolicyFile(path);
  REQUIRE(fresh.ok());
  const auto& a = p3->lists[0].entries;
  const auto& b = fresh->lists[0].entries;
  REQUIRE(a.size() == b.size());
  REQUIRE(a.size() == 70002);
  size_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i)
    differ += !(a[i].prefix == b[i].prefix && a[i].file == b[i].file && a[i].line == b[i].line &&
                a[i].source_id == b[i].source_id);
  CHECK(differ == 0);
  CHECK(a[0].prefix.ToString() == "198.51.100.7/32");
  CHECK(a.back().prefix.ToString() == "203.0.113.0/25");
  CHECK(a.back().line == 70002u);
}

TEST_CASE("policy: buffers made ahead are what the first reload writes into, and change nothing") {
  TempDir d("bw-policy-premade");
  // Over a MiB of plain list: the feed cache keeps its text and parses a change as a diff. The
  // /24s repeat after 65536 lines: fewer trie entries than items.
  std::string text;
  for (uint32_t i = 0; i < 100000; ++i)
    absl::StrAppend(&text, "10.", (i >> 8) & 255, ".", i & 255, ".0/24\n");
  REQUIRE(text.size() >= 1024 * 1024);
  d.Write("feed.txt", text);
  std::string path = d.Write("p.yaml",
                             "lists:\n  - name: a\n    action: block\n    entries: [198.51.100.7]\n"
                             "    files: [feed.txt]\n");
  PruneFeedCache({});
  KeepFeedSpares(true);
  auto p1 = LoadPolicyFile(path);
  REQUIRE(p1.ok());
  absl::Time now = absl::FromUnixSeconds(1800000000);
  auto c1 = Compile(*p1, now);
  REQUIRE(c1.ok());

  ReloadBufferSizes sizes = ReloadBufferSizesOf(*p1, *c1);
  REQUIRE(sizes.list_entries.size() == 1);
  CHECK(sizes.list_entries[0] > p1->lists[0].entries.size());  // room to grow
  CHECK(sizes.v4 > c1->v4.size());
  CHECK(sizes.items4 > 0);
  ReloadBuffers b = MakeReloadBuffers(sizes);
  REQUIRE(b.policy.lists.size() == 1);
  CHECK(b.policy.lists[0].entries.empty());
  CHECK(b.policy.lists[0].entries.capacity() >= sizes.list_entries[0]);
  REQUIRE(b.compiled);
  CHECK(b.compiled->v4.empty());
  CHECK(b.compiled->v4.capacity() >= sizes.v4);
  CHECK(b.compiled->entries.capacity() >= sizes.entries);
  const PolicyEntry* list_storage = b.policy.lists[0].entries.data();
  const KernelEntry* v4_storage = b.compiled->v4.data();
  const CompiledEntry* entry_storage = b.compiled->entries.data();
  const uint32_t* slot_storage = b.compiled->entry_slot.data();

  // The feed's part: a spare for the cached list, the pages written.
  CHECK(GetFeedCacheStats().spare_bytes == 0);
  KeepFeedSpares(false);
  PrepareFeedSpares();  // not while spares are not kept
  CHECK(GetFeedCacheStats().spare_bytes == 0);
  KeepFeedSpares(true);
  // Not keeping dropped the list's text as well: parsed again, the cache holds it again.
  PruneFeedCache({});
  REQUIRE(LoadPolicyFile(path).ok());
  PrepareFeedSpares();
  size_t feed_room = 100000 + 100000 / 8;
  CHECK(GetFeedCacheStats().spare_bytes == feed_room * sizeof(FeedEntry));

  // The first reload: a line removed and one added.
  std::string changed = text.substr(text.find('\n') + 1) + "203.0.113.0/24\n";
  d.Write("feed.txt", changed);
  FeedCacheStats s0 = GetFeedCacheStats();
  auto p2 = LoadPolicyFile(path, &b.policy);
  REQUIRE(p2.ok());
  CHECK(GetFeedCacheStats().diffs - s0.diffs == 1);
  CHECK(p2->lists[0].entries.data() == list_storage);
  auto feed = LoadFeedCached(d.path() + "/feed.txt");  // a cache hit: the Feed the reload parsed
  REQUIRE(feed.ok());
  CHECK((*feed)->entries.capacity() == feed_room);  // the spare's storage
  auto c2 = Compile(*p2, now, &*c1, b.compiled.get());
  REQUIRE(c2.ok());
  CHECK(c2->v4.data() == v4_storage);
  CHECK(c2->entries.data() == entry_storage);
  CHECK(c2->entry_slot.data() == slot_storage);  // refs no longer 1..n: indexed by a table

  // The same as a reload without them.
  PruneFeedCache({});
  auto fresh = LoadPolicyFile(path);
  REQUIRE(fresh.ok());
  auto c3 = Compile(*fresh, now, &*c1);
  REQUIRE(c3.ok());
  REQUIRE(c2->v4.size() == c3->v4.size());
  size_t differ = 0;
  for (size_t i = 0; i < c2->v4.size(); ++i)
    differ += !(c2->v4[i].prefix == c3->v4[i].prefix && c2->v4[i].value == c3->v4[i].value);
  CHECK(differ == 0);
  REQUIRE(c2->entries.size() == c3->entries.size());
  for (size_t i = 0; i < c2->entries.size(); ++i)
    differ += !(c2->entries[i].ref == c3->entries[i].ref &&
                c2->entries[i].prefix == c3->entries[i].prefix &&
                c2->entries[i].line == c3->entries[i].line);
  CHECK(differ == 0);
  CHECK(c2->entries.size() == 100001);
  PruneFeedCache({});
}

TEST_CASE("policy: precedence SAFELIST > BLOCK > WATCH whatever the prefix lengths") {
  Policy p = MustParse(R"(
lists:
  - name: watch-hosts
    action: watch
    entries: [10.1.2.3, 10.9.0.0/16, 192.0.2.0/24, 198.51.100.0/24]
  - name: block-16
    action: block
    entries: [10.1.0.0/16, 172.16.5.0/24]
  - name: safe-8
    action: safelist
    entries: [172.16.0.0/12]
  - name: watch-8
    action: watch
    entries: [10.0.0.0/8]
  - name: watch-again
    action: watch
    entries: [198.51.100.0/24, 198.51.100.128/25]
)");
  CompiledPolicy c = MustCompile(p);
  // A watched /32 inside a blocked /16 is stored as BLOCK, decided by the /16.
  const KernelEntry& h = Kernel(c, "10.1.2.3");
  CHECK(h.value.action == BW_ACTION_BLOCK);
  CHECK(ListOf(c, h) == "block-16");
  CHECK(DecidingPrefix(c, h) == "10.1.0.0/16");
  CHECK(int(h.value.prefixlen) == 16);
  // A blocked /24 inside a safelisted /12 is stored as SAFELIST.
  const KernelEntry& s = Kernel(c, "172.16.5.0/24");
  CHECK(s.value.action == BW_ACTION_SAFELIST);
  CHECK(ListOf(c, s) == "safe-8");
  CHECK(int(s.value.prefixlen) == 12);
  // Watch inside watch: the more specific decides.
  const KernelEntry& w = Kernel(c, "10.9.0.0/16");
  CHECK(w.value.action == BW_ACTION_WATCH);
  CHECK(ListOf(c, w) == "watch-hosts");
  CHECK(int(w.value.prefixlen) == 16);
  // The /8 itself and the /16 block.
  CHECK(Kernel(c, "10.0.0.0/8").value.action == BW_ACTION_WATCH);
  CHECK(Kernel(c, "10.1.0.0/16").value.action == BW_ACTION_BLOCK);
  // Same prefix, same action in two lists: the first in policy order decides.
  const KernelEntry& dup = Kernel(c, "198.51.100.0/24");
  CHECK(ListOf(c, dup) == "watch-hosts");
  // ...but a more specific equal-precedence entry decides for its own prefix.
  CHECK(ListOf(c, Kernel(c, "198.51.100.128/25")) == "watch-again");
  // One kernel entry per distinct prefix.
  CHECK(c.v4.size() == 9);
  // Lookups behave like the kernel's longest-prefix match.
  CHECK(c.Lookup(*ParseAddress("10.1.200.1"))->value.action == BW_ACTION_BLOCK);
  CHECK(c.Lookup(*ParseAddress("10.2.0.1"))->value.action == BW_ACTION_WATCH);
  CHECK(c.Lookup(*ParseAddress("172.31.0.1"))->value.action == BW_ACTION_SAFELIST);
  CHECK(c.Lookup(*ParseAddress("172.16.5.5"))->value.action == BW_ACTION_SAFELIST);
}

TEST_CASE("policy: same prefix in lists of different actions: the highest wins") {
  CompiledPolicy c = MustCompile(MustParse(R"(
lists:
  - { name: w, action: watch, entries: [203.0.113.0/24] }
  - { name: b, action: block, entries: [203.0.113.0/24] }
  - { name: b2, action: block, entries: [203.0.113.0/24] }
)"));
  REQUIRE(c.v4.size() == 1);
  CHECK(c.v4[0].value.action == BW_ACTION_BLOCK);
  CHECK(ListOf(c, c.v4[0]) == "b");
  CHECK(c.v4[0].value.entry_ref == 2u);
  CHECK(c.lists[0].id == 1u);
  CHECK(c.entries.size() == 3);
}

TEST_CASE("policy: explain names every covering entry and the one that decides") {
  CompiledPolicy c = MustCompile(MustParse(R"(
lists:
  - name: seed-2013-09
    action: watch
    entries: [37.9.53.0/24, 37.9.53.12]
  - name: block-ua
    action: block
    entries: [37.9.0.0/16]
  - name: old
    action: safelist
    expires: 2000-01-01T00:00:00Z
    entries: [37.0.0.0/8]
)"));
  Explanation x = c.Explain(*ParseAddress("37.9.53.12"));
  REQUIRE(x.covering.size() == 4);
  CHECK(c.entry(x.covering[0].entry_ref)->prefix.ToString() == "37.9.53.12/32");
  CHECK(c.entry(x.covering[1].entry_ref)->prefix.ToString() == "37.9.53.0/24");
  CHECK(c.entry(x.covering[2].entry_ref)->prefix.ToString() == "37.9.0.0/16");
  CHECK(c.entry(x.covering[3].entry_ref)->prefix.ToString() == "37.0.0.0/8");
  CHECK(x.covering[3].expired);
  REQUIRE(x.match.has_value());
  CHECK(x.match->prefix.ToString() == "37.9.53.12/32");
  CHECK(x.deciding_entry == 3u);  // the /16 block
  std::string text = c.ExplainText(*ParseAddress("37.9.53.12"));
  INFO(text);
  CHECK(text.find("37.9.53.12: block") == 0);
  CHECK(text.find("decided by list 'block-ua' entry 37.9.0.0/16 at policy.yaml:8") != std::string::npos);
  CHECK(text.find("(expired)") != std::string::npos);
  CHECK(c.ExplainText(*ParseAddress("198.51.100.1")) == "198.51.100.1: not listed\n");
}

// The daemon's runtime entries come from a JSON state file written with an entry per several
// lines: `query` once cited the Nth entry as "state.json:N", another entry's line.
TEST_CASE("policy: entries of the numbered file are cited by entry number and not as a line") {
  Policy p = MustParse(R"(
lists:
  - name: feed
    action: watch
    entries: [37.9.0.0/16]
)");
  const uint32_t state = static_cast<uint32_t>(p.files.size());
  p.files.push_back("/var/lib/bannerwatch/state.json");
  p.numbered_file = state;
  ListSpec l;
  l.name = "manual";
  l.action = ListAction::kBlock;
  for (uint32_t n : {1u, 2u})
    l.entries.push_back(PolicyEntry{*ParsePrefix(n == 1 ? "203.0.113.0/24" : "37.9.53.12"), state, n, {}});
  p.lists.push_back(std::move(l));
  CompiledPolicy c = MustCompile(p);
  std::string text = c.ExplainText(*ParseAddress("37.9.53.12"));
  INFO(text);
  CHECK(text.find("decided by list 'manual' entry 37.9.53.12/32 at /var/lib/bannerwatch/state.json "
                  "entry 2)") != std::string::npos);
  CHECK(text.find("state.json:") == std::string::npos);
  // The policy file's own entries keep file:line.
  CHECK(text.find("37.9.0.0/16  watch  list 'feed'  policy.yaml:5") != std::string::npos);
}

TEST_CASE("policy: expiry drops a list's entries and reports the next expiry") {
  Policy p = MustParse(R"(
lists:
  - { name: gone, action: block, expires: "2020-01-01T00:00:00Z", entries: [198.51.100.0/24] }
  - { name: soon, action: block, expires: "2030-06-01T12:00:00+02:00", entries: [203.0.113.0/24] }
  - { name: later, action: watch, expires: "2031-01-01T00:00:00Z", entries: [203.0.113.0/25] }
  - { name: always, action: watch, entries: [198.51.100.7] }
)");
  absl::Time now = absl::FromCivil(absl::CivilSecond(2025, 1, 1, 0, 0, 0), absl::UTCTimeZone());
  CompiledPolicy c = MustCompile(p, now);
  CHECK(c.lists[0].expired);
  CHECK_FALSE(c.lists[1].expired);
  REQUIRE(c.next_expiry.has_value());
  CHECK(*c.next_expiry == absl::FromCivil(absl::CivilSecond(2030, 6, 1, 10, 0, 0), absl::UTCTimeZone()));
  // The expired /24 is gone; the /32 inside it remains, decided by its own list.
  CHECK(c.v4.size() == 3);
  CHECK(ListOf(c, Kernel(c, "198.51.100.7")) == "always");
  CHECK(c.Lookup(*ParseAddress("198.51.100.8")) == nullptr);
  CHECK(Kernel(c, "203.0.113.0/25").value.action == BW_ACTION_BLOCK);

  // After "soon" expires, the watch /25 decides for itself; the next expiry moves on.
  CompiledPolicy c2 = MustCompile(p, *c.next_expiry);
  CHECK(c2.lists[1].expired);
  CHECK(Kernel(c2, "203.0.113.0/25").value.action == BW_ACTION_WATCH);
  CHECK(*c2.next_expiry == absl::FromCivil(absl::CivilSecond(2031, 1, 1, 0, 0, 0), absl::UTCTimeZone()));
  // Everything expired: no next expiry.
  CompiledPolicy c3 = MustCompile(p, absl::FromCivil(absl::CivilSecond(2040, 1, 1, 0, 0, 0), absl::UTCTimeZone()));
  CHECK_FALSE(c3.next_expiry.has_value());
  CHECK(c3.v4.size() == 1);
}

TEST_CASE("policy: IPv4-mapped IPv6 entries are stored as IPv4") {
  CompiledPolicy c = MustCompile(MustParse(R"(
lists:
  - name: mixed
    action: block
    entries: ["::ffff:203.0.113.0/120", "::ffff:198.51.100.9", "2001:db8::/32"]
)"));
  REQUIRE(c.v4.size() == 2);
  CHECK(c.v4[0].prefix.ToString() == "198.51.100.9/32");
  CHECK(c.v4[1].prefix.ToString() == "203.0.113.0/24");
  CHECK(int(c.v4[1].value.prefixlen) == 24);
  REQUIRE(c.v6.size() == 1);
  CHECK(c.v6[0].prefix.ToString() == "2001:db8::/32");
  CHECK(c.Lookup(*ParseAddress("::ffff:203.0.113.77"))->prefix.ToString() == "203.0.113.0/24");
}

TEST_CASE("policy: compile limits count distinct non-expired prefixes") {
  Policy p = MustParse("lists:\n  - { name: a, action: watch, entries: [198.51.100.1, 198.51.100.2] }\n");
  p.v4_entries = 1;  // as if the policy said so (programmatic policies are checked by Compile too)
  auto c = Compile(p);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().message().find("limits.v4_entries: 2 distinct IPv4 prefixes, more than the limit 1") !=
        absl::string_view::npos);
}

// A random policy in a small address space, so prefixes nest and repeat across lists.
Policy RandomPolicy(std::mt19937& rng) {
  Policy p;
  p.path = "random.yaml";
  p.files = {p.path};
  int nlists = 1 + static_cast<int>(rng() % 5);
  for (int l = 0; l < nlists; ++l) {
    ListSpec ls;
    ls.name = absl::StrCat("l", rng() % 6);
    bool dup = false;
    for (const ListSpec& o : p.lists) dup |= o.name == ls.name;
    if (dup) continue;
    ls.action = static_cast<ListAction>(1 << (rng() % 3));
    int n = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) {
      // 10.0.0.0/8 with few distinct bits, lengths 8..32; some IPv6.
      if (rng() % 8 == 0) {
        uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, static_cast<uint8_t>(rng() % 4)};
        ls.entries.push_back({Prefix::Make(Family::kV6, b, 32 + rng() % 10), 0, static_cast<uint32_t>(i + 1), ""});
      } else {
        uint32_t a = 0x0a000000u | (rng() & 0x0303u);
        ls.entries.push_back({Prefix::V4(a, 8 + rng() % 25), 0, static_cast<uint32_t>(i + 1), ""});
      }
    }
    p.lists.push_back(ls);
  }
  return p;
}

// Checks a compiled policy against the definition, the slow way: for a prefix P, the deciding
// entry is the best covering entry by (precedence, length, earliest in policy order).
void CheckAgainstModel(const CompiledPolicy& c, std::mt19937& rng) {
  auto prec = [&](const CompiledEntry& e) { return Precedence(c.list(e.list_id)->action); };
  auto best_for = [&](const Prefix& q) -> const CompiledEntry* {
    const CompiledEntry* best = nullptr;
    for (const CompiledEntry& e : c.entries) {  // policy order
      if (!e.prefix.contains(q)) continue;
      if (!best || prec(e) > prec(*best) || (prec(e) == prec(*best) && e.prefix.len > best->prefix.len))
        best = &e;
    }
    return best;
  };
  std::vector<Prefix> all;
  for (const CompiledEntry& e : c.entries) all.push_back(e.prefix);
  std::sort(all.begin(), all.end());
  size_t distinct = static_cast<size_t>(std::unique(all.begin(), all.end()) - all.begin());
  REQUIRE(c.v4.size() + c.v6.size() == distinct);
  for (const auto* t : {&c.v4, &c.v6})
    for (const KernelEntry& k : *t) {
      const CompiledEntry* b = best_for(k.prefix);
      INFO("prefix " << k.prefix.ToString());
      REQUIRE(b);
      CHECK(k.value.entry_ref == b->ref);
      CHECK(k.value.list_id == b->list_id);
      CHECK(int(k.value.prefixlen) == int(b->prefix.len));
      CHECK(int(k.value.action) == int(c.list(b->list_id)->action));
      CHECK(c.entry(b->ref) == b);
    }
  // Any address: the kernel-style lookup gives the best covering entry.
  for (int i = 0; i < 300; ++i) {
    Prefix a = Prefix::V4(0x0a000000u | (rng() & 0x0303u) | (rng() % 2 ? 0 : (rng() & 0xffffu)), 32);
    const KernelEntry* m = c.Lookup(a);
    const CompiledEntry* b = best_for(a);
    INFO("address " << a.ToString());
    if (!b) {
      CHECK(m == nullptr);
    } else {
      REQUIRE(m != nullptr);
      CHECK(int(m->value.action) == int(c.list(b->list_id)->action));
      CHECK(m->value.entry_ref == b->ref);
    }
  }
}

TEST_CASE("policy: compile agrees with a brute-force model on random policies") {
  std::mt19937 rng(20130911);
  std::optional<CompiledPolicy> prev;
  for (int round = 0; round < 40; ++round) {
    INFO("round " << round);
    Policy p = RandomPolicy(rng);
    CompiledPolicy c = MustCompile(p);
    CheckAgainstModel(c, rng);
    // Again with ids carried over from an unrelated earlier policy.
    if (prev) {
      auto c2 = Compile(p, absl::Now(), &*prev);
      REQUIRE(c2.ok());
      CheckAgainstModel(*c2, rng);
    }
    prev = c;
  }
}

TEST_CASE("policy: ids stay stable across compiles when the previous policy is given") {
  Policy p = MustParse(R"(
lists:
  - { name: a, action: watch, entries: [198.51.100.1, 198.51.100.2, 198.51.100.3] }
  - { name: b, action: block, entries: [203.0.113.0/24, 203.0.113.0/24, "2001:db8::/32"] }
)");
  CompiledPolicy c1 = MustCompile(p);
  CHECK(c1.entry_index.empty());  // refs 1..n
  // Remove the first entry of `a`, add a list in front, add an entry to `b`.
  Policy q = p;
  q.lists[0].entries.erase(q.lists[0].entries.begin());
  q.lists[1].entries.push_back({*ParsePrefix("203.0.113.7"), 0, 9, ""});
  ListSpec front;
  front.name = "new";
  front.action = ListAction::kWatch;
  front.entries.push_back({*ParsePrefix("192.0.2.0/24"), 0, 1, ""});
  q.lists.insert(q.lists.begin(), front);
  CompiledPolicy c2 = *Compile(q, absl::Now(), &c1);
  CHECK(c2.list(1)->name == "a");
  CHECK(c2.list(2)->name == "b");
  CHECK(c2.list(3)->name == "new");
  CHECK(c2.max_list_id == 3u);
  // Every entry that stayed keeps its ref; the two new ones get fresh refs above the old ones.
  for (const CompiledEntry& e : c2.entries) {
    const std::string s = e.prefix.ToString();
    if (s == "198.51.100.2/32") CHECK(e.ref == 2u);
    if (s == "198.51.100.3/32") CHECK(e.ref == 3u);
    if (s == "2001:db8::/32") CHECK(e.ref == 6u);
    if (s == "192.0.2.0/24" || s == "203.0.113.7/32") CHECK(e.ref > 6u);
    CHECK(c2.entry(e.ref) == &e);
  }
  // The duplicate /24 in `b`: the first occurrence keeps ref 4 and decides.
  CHECK(Kernel(c2, "203.0.113.0/24").value.entry_ref == 4u);
  CHECK(c2.entry(1) == nullptr);  // removed
  // Unchanged kernel values compare equal, so an apply rewrites nothing for them.
  CHECK(Kernel(c2, "198.51.100.3").value.entry_ref == Kernel(c1, "198.51.100.3").value.entry_ref);
  CHECK(Kernel(c2, "198.51.100.3").value.list_id == Kernel(c1, "198.51.100.3").value.list_id);
}

// Not run by default (hidden tag): prints how long 1 M prefixes take to parse and compile.
TEST_CASE("policy: bench: parse and compile 1M prefixes", "[.bench]") {
  TempDir d("bw-policy");
  std::mt19937 rng(1);
  std::string text;
  text.reserve(20u << 20);
  text += "; generated\n";
  for (int i = 0; i < 1000000; ++i) {
    uint32_t a = rng();
    unsigned len = 16 + rng() % 17;
    Prefix p = Prefix::V4(a, len);
    absl::StrAppend(&text, p.ToString(), " ; SBL", i, "\n");
  }
  d.Write("big.txt", text);
  d.Write("p.yaml",
          "lists:\n  - { name: big, action: block, files: [big.txt] }\n"
          "  - { name: w, action: watch, entries: [10.0.0.0/8] }\n"
          "  - { name: s, action: safelist, entries: [192.168.0.0/16] }\n");
  auto t0 = std::chrono::steady_clock::now();
  auto p = LoadPolicyFile(d.path() + "/p.yaml");
  REQUIRE(p.ok());
  auto t1 = std::chrono::steady_clock::now();
  auto c = Compile(*p);
  REQUIRE(c.ok());
  auto t2 = std::chrono::steady_clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::printf("1M prefixes: parse %.0f ms, compile %.0f ms, total %.0f ms (%zu kernel entries)\n",
              ms(t0, t1), ms(t1, t2), ms(t0, t2), c->v4.size());
}

}  // namespace
}  // namespace bw
