// The command line (cli.hpp): every subcommand has its own --help, usage errors are one line
// and exit 2, an option given twice is an error (but --iface and --local collect), defaults are
// what they were, and the requests sent to the daemon carry only what the operator gave. The
// binary itself is run by tests/integration/daemon_test.cpp.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "daemon/cli/cli.hpp"
#include "daemon/control/control.hpp"

namespace bw::test {
namespace {

using json = nlohmann::json;

CommandLine Parse(std::vector<std::string> args) {
  std::vector<const char*> argv = {"bannerwatch"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
}

int Lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST_CASE("cli: every command has its own --help on stdout with exit 0") {
  // `block --help` once said "unknown option --help" and printed the whole usage.
  struct Case {
    std::vector<std::string> args;
    std::vector<const char*> says;
  };
  const std::vector<Case> cases = {
      {{"block", "--help"}, {"bannerwatch block", "CIDR", "--list", "--reason", "--ttl", "--control", "kept when not given"}},
      {{"watch", "-h"}, {"bannerwatch watch", "--ttl"}},
      {{"allow", "--help"}, {"bannerwatch allow", "runtime-safelist"}},
      {{"unlist", "--help"}, {"bannerwatch unlist", "CIDR"}},
      {{"list", "--help"}, {"bannerwatch list", "--json", "expiry"}},
      {{"query", "--help"}, {"bannerwatch query", "IP"}},
      {{"events", "--help"}, {"bannerwatch events", "--follow", "--count"}},
      {{"status", "--help"}, {"bannerwatch status", "--json"}},
      {{"reload", "--help"}, {"bannerwatch reload"}},
      {{"run", "--help"}, {"bannerwatch run", "--iface", "--xdp-mode", "--no-eve-file", "--eve-stdout", "--metrics", "--state", "--bpf-variant", "--verbose"}},
      {{"detach", "--help"}, {"bannerwatch detach", "--pin-root", "/sys/fs/bpf/bannerwatch"}},
      {{"check", "--help"}, {"bannerwatch check", "--config", "verifier"}},
      // scan's long text is kept: the rate limit on capture time, link types, exit status.
      {{"scan", "--help"}, {"bannerwatch scan", "--local", "--pin-root", "CAPTURE", "capture time", "SLL2", "Exit status"}},
      // Help wins over everything else given, and `help CMD` is the same.
      {{"block", "--ttl", "forever", "--help"}, {"bannerwatch block", "--ttl"}},
      {{"help", "block"}, {"bannerwatch block", "--reason"}},
  };
  for (const Case& c : cases) {
    CommandLine r = Parse(c.args);
    INFO(c.args[0] << " " << c.args[1] << ":\n" << r.text);
    CHECK(r.exit_code == 0);
    for (const char* s : c.says) CHECK(absl::StrContains(r.text, s));
  }
  // The overview lists every command, `list` too.
  for (const std::vector<std::string>& a :
       {std::vector<std::string>{"--help"}, {"help"}, {"-h"}}) {
    CommandLine r = Parse(a);
    CHECK(r.exit_code == 0);
    for (const char* cmd : {"run", "detach", "check", "scan", "status", "block|watch|allow",
                            "unlist", "list [--json]", "query", "events", "reload", "--help"})
      CHECK(absl::StrContains(r.text, cmd));
  }
  CHECK(Parse({"--version"}).text == "bannerwatch 0.1.0\n");
  CHECK(Parse({}).exit_code == 2);  // no command: the overview, as a usage error
}

TEST_CASE("cli: usage errors are exit 2 with one line naming the command and the problem") {
  struct Case {
    std::vector<std::string> args;
    const char* says;
  };
  const std::vector<Case> cases = {
      {{"bogus"}, "bannerwatch: unknown command 'bogus'"},
      {{"--control", "x", "status"}, "give a command before the options"},
      {{"block", "203.0.113.9", "--bogus"}, "bannerwatch block: unknown option --bogus"},
      {{"block", "203.0.113.9", "--bogus=3"}, "bannerwatch block: unknown option --bogus"},
      {{"block"}, "bannerwatch block: CIDR is required"},
      {{"block", "203.0.113.9", "203.0.113.10"}, "unexpected argument '203.0.113.10' (block takes one CIDR)"},
      {{"block", "203.0.113.9", "--ttl"}, "bannerwatch block: --ttl needs a value"},
      {{"block", "203.0.113.9", "--ttl", "forever"}, "--ttl 'forever': want a positive duration"},
      {{"block", "203.0.113.9", "--ttl", "0s"}, "--ttl '0s': want a positive duration"},
      // A list name the daemon would refuse is refused here, naming the option.
      {{"block", "203.0.113.9", "--list", "bad name"}, "bannerwatch block: --list 'bad name': want 1 to 64 characters of A-Z a-z 0-9 . _ -"},
      {{"watch", "203.0.113.9", "--list="}, "bannerwatch watch: --list needs a value"},
      {{"allow", "203.0.113.9", "--list", std::string(65, 'a')}, "want 1 to 64 characters"},
      // Options of another command are not taken silently.
      {{"unlist", "203.0.113.9", "--ttl", "1h"}, "bannerwatch unlist: unknown option --ttl"},
      {{"status", "--follow"}, "bannerwatch status: unknown option --follow"},
      {{"status", "extra"}, "unexpected argument 'extra' (status takes no arguments)"},
      {{"query"}, "bannerwatch query: IP is required"},
      {{"events", "--count", "many"}, "bannerwatch events: --count wants a number"},
      {{"run", "--xdp-mode", "turbo"}, "bannerwatch run: --xdp-mode: 'turbo' is not one of auto, native, generic"},
      {{"run", "--bpf-variant", "tiny"}, "--bpf-variant 'tiny': want auto, full or core"},
      {{"run", "eth0"}, "unexpected argument 'eth0' (run takes no arguments)"},
      {{"run", "--iface", "a", "b"}, "unexpected argument 'b'"},
      {{"scan", "--config", "p.yaml"}, "bannerwatch scan: no capture files given"},
      {{"scan", "--local", "198.51.100.300", "x.pcap"}, "198.51.100.300"},
      {{"scan", "-x", "x.pcap"}, "bannerwatch scan: unknown option -x"},
      {{"scan", "x.pcap", "--local"}, "--local needs a value"},
      {{"detach", "--pin-root"}, "--pin-root needs a value"},
  };
  for (const Case& c : cases) {
    CommandLine r = Parse(c.args);
    INFO(c.args[0] << ": " << r.text);
    CHECK(r.exit_code == 2);
    CHECK(r.command.empty());
    CHECK(absl::StrContains(r.text, c.says));
    if (!c.args.empty()) CHECK(Lines(r.text) == 1);
  }
}

TEST_CASE("cli: an option given twice is an error except --iface and --local which collect") {
  // The hand-written parser once kept the first of two values; now neither is guessed.
  for (const std::vector<std::string>& a : {
           std::vector<std::string>{"block", "203.0.113.9", "--ttl", "1h", "--ttl", "2h"},
           {"block", "203.0.113.9", "--reason", "a", "--reason=b"},
           {"watch", "203.0.113.9", "--list", "a", "--list", "b"},
           {"status", "--json", "--json"},
           {"status", "--control", "/a", "--control", "/b"},
           {"events", "--follow", "--follow"},
           {"run", "--config", "a.yaml", "--config", "b.yaml"},
           {"run", "--state", "a", "--state", "b"},
           {"scan", "--config", "a.yaml", "--config", "b.yaml", "x.pcap"},
           {"check", "--config", "a.yaml", "--config", "b.yaml"},
           {"detach", "--pin-root", "/a", "--pin-root", "/b"},
       }) {
    CommandLine r = Parse(a);
    INFO(a[0] << ": " << r.text);
    CHECK(r.exit_code == 2);
    CHECK(absl::StrContains(r.text, "given more than once"));
  }
  CommandLine r = Parse({"run", "--iface", "eth0", "--iface=eth1", "--iface", "eth2"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.run.ifaces == std::vector<std::string>{"eth0", "eth1", "eth2"});
  r = Parse({"scan", "--local", "198.51.100.0/24", "a.pcap", "--local", "2001:db8::1", "b.pcap"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.scan.local.size() == 2u);
  CHECK(r.scan.captures == std::vector<std::string>{"a.pcap", "b.pcap"});
}

TEST_CASE("cli: defaults and values as before") {
  CommandLine r = Parse({"run"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.command == "run");
  CHECK(!r.run.config_path.empty());
  CHECK(r.run.ifaces.empty());
  CHECK(r.run.xdp_mode == XdpMode::kAuto);
  CHECK(r.run.bpf_variant == Variant::kAuto);
  CHECK(!r.run.verbose);
  // Unset: the policy's values stand.
  CHECK(!r.run.pin_root);
  CHECK(!r.run.eve_path);
  CHECK(!r.run.eve_stdout);
  CHECK(!r.run.control_socket);
  CHECK(!r.run.metrics_listen);
  CHECK(!r.run.state_file);

  r = Parse({"run", "--config=/p.yaml", "--xdp-mode", "generic", "--pin-root", "/sys/fs/bpf/x",
             "--eve", "/e.json", "--no-eve-file", "--eve-stdout", "--control", "/c.sock",
             "--metrics", "off", "--state", "/s.json", "--bpf-variant", "core", "--verbose"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.run.config_path == "/p.yaml");
  CHECK(r.run.xdp_mode == XdpMode::kGeneric);
  CHECK(*r.run.pin_root == "/sys/fs/bpf/x");
  CHECK(*r.run.eve_path == "");  // --no-eve-file wins over --eve
  CHECK(*r.run.eve_stdout);
  CHECK(*r.run.control_socket == "/c.sock");
  CHECK(*r.run.metrics_listen == "off");
  CHECK(*r.run.state_file == "/s.json");
  CHECK(r.run.bpf_variant == Variant::kCore);
  CHECK(r.run.verbose);

  r = Parse({"check", "/some/policy.yaml"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.config == "/some/policy.yaml");
  r = Parse({"check", "--config", "/a.yaml"});
  CHECK(r.config == "/a.yaml");
  r = Parse({"detach"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.pin_root == "/sys/fs/bpf/bannerwatch");

  // scan: "-" is stdin, and after "--" every word is a capture.
  r = Parse({"scan", "--verbose", "-", "a.pcap", "--", "-odd.pcap", "--local"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.verbose);
  CHECK(r.scan.captures == std::vector<std::string>{"-", "a.pcap", "-odd.pcap", "--local"});
  CHECK(r.scan.pin_root.empty());
  CHECK(!r.scan.config_path.empty());

  r = Parse({"status"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.control == kControlSocketDefault);
  CHECK(r.request == json{{"cmd", "status"}});
  CHECK(!r.json);
}

TEST_CASE("cli: the requests carry only what was given (no reason: the entry's is kept)") {
  CommandLine r = Parse({"block", "203.0.113.9", "--ttl", "12h"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.request == json{{"cmd", "block"}, {"cidr", "203.0.113.9"}, {"ttl_seconds", 43200}});
  r = Parse({"watch", "203.0.113.0/24", "--reason", "", "--list", "c2.feed", "--control", "/s"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.request == json{{"cmd", "watch"}, {"cidr", "203.0.113.0/24"}, {"reason", ""}, {"list", "c2.feed"}});
  CHECK(r.control == "/s");
  r = Parse({"allow", "198.51.100.8", "--reason=seen beaconing", "--json"});
  CHECK(r.request == json{{"cmd", "allow"}, {"cidr", "198.51.100.8"}, {"reason", "seen beaconing"}});
  CHECK(r.json);
  r = Parse({"unlist", "198.51.100.8"});
  CHECK(r.request == json{{"cmd", "unlist"}, {"cidr", "198.51.100.8"}});
  r = Parse({"list", "--json"});
  REQUIRE(r.exit_code == -1);
  CHECK(r.request == json{{"cmd", "list"}});
  CHECK(r.json);
  r = Parse({"query", "37.9.53.40"});
  CHECK(r.request == json{{"cmd", "query"}, {"ip", "37.9.53.40"}});
  r = Parse({"events", "--follow", "--count", "5"});
  CHECK(r.request == json{{"cmd", "events"}, {"follow", true}, {"count", 5}});
  r = Parse({"events"});
  CHECK(r.request == json{{"cmd", "events"}, {"follow", false}});
  r = Parse({"reload"});
  CHECK(r.request == json{{"cmd", "reload"}});
}

TEST_CASE("cli: `list` prints every entry with its list and reason and added time and expiry or never") {
  json reply = json::parse(R"({"ok":true,"state_file":"/var/lib/bannerwatch/state.json","entries":[
    {"n":1,"cidr":"203.0.113.0/24","action":"block","list":"manual","reason":"seen beaconing",
     "added":"2024-05-01T10:00:00.000+00:00","expires":"2024-05-01T22:00:00.000+00:00"},
    {"n":2,"cidr":"198.51.100.7/32","action":"watch","list":"runtime-watch","reason":"",
     "added":"2024-05-01T11:00:00.000+00:00","expires":null}]})");
  absl::Time now = absl::FromUnixSeconds(1714557600);  // 2024-05-01T10:00:00Z
  std::string out = FormatRuntimeList(reply, now);
  INFO(out);
  CHECK(absl::StrContains(out, "2 runtime entries, numbered as in /var/lib/bannerwatch/state.json:"));
  // One row per entry, its fields in the header's order, the columns aligned.
  auto in_order = [&](const std::string& line, const std::vector<std::string>& fields) {
    size_t at = 0;
    for (const std::string& f : fields) {
      at = line.find(f, at);
      if (at == std::string::npos) return false;
      at += f.size();
    }
    return true;
  };
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  REQUIRE(lines.size() == 4u);
  CHECK(in_order(lines[1], {"#", "CIDR", "ACTION", "LIST", "ADDED", "EXPIRES", "REASON"}));
  CHECK(in_order(lines[2], {"1", "203.0.113.0/24", "block", "manual", "2024-05-01T10:00:00.000+00:00",
                            "2024-05-01T22:00:00.000+00:00 (in 12h)", "seen beaconing"}));
  CHECK(in_order(lines[3], {"2", "198.51.100.7/32", "watch", "runtime-watch",
                            "2024-05-01T11:00:00.000+00:00", "never"}));
  CHECK(lines[1].find("ACTION") == lines[2].find("block"));
  CHECK(lines[2].find("block") == lines[3].find("watch"));
  CHECK(lines[1].find("EXPIRES") == lines[3].find("never"));
  CHECK(FormatRuntimeList(json::parse(R"({"ok":true,"entries":[]})"), now) ==
        "no runtime entries\n");
}

}  // namespace
}  // namespace bw::test
