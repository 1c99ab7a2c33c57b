// CrowdSec as a decision source, against a real CrowdSec Local API (Debian's crowdsec 1.4, started
// by the test in the daemon's namespace, decisions added and deleted with cscli): a ban is enforced
// within one poll interval and lifted when deleted (IPv4, IPv6, a range), other decision types go
// to the list that takes them, an unreachable API keeps the last good set while each decision
// still ends on time, answers that are not a decisions stream or a stalled API change nothing, and
// a bulk import of 100 000 decisions is enforced whole. [host-tools]: the VM guests have no CrowdSec
// (its API's side is the same on every kernel).
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/crowdsec_lapi.hpp"
#include "lib/test_util.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

using json = nlohmann::json;

void RequireCrowdsec() {
  if (!CrowdsecLapi::Installed())
    FAIL("crowdsec and cscli are needed (scripts/install-deps installs Debian's crowdsec)");
}

std::string CrowdsecPolicy(const std::string& url, const std::string& key_file,
                           const std::string& timeout = "1s") {
  return absl::StrCat("ports: [443]\n",
                      "crowdsec:\n  url: ", url, "\n  key_file: ", key_file, "\n  poll: 1s\n",
                      "  timeout: ", timeout, "\n",
                      "lists:\n"
                      "  - name: crowdsec\n    action: block\n    source: crowdsec\n"
                      "  - name: crowdsec-captcha\n    action: watch\n    source: crowdsec\n"
                      "    types: [captcha]\n");
}

// One echo request from the server namespace to the protected host, answered within a second.
bool Reaches(Topology& t, bool v6 = false) {
  return t.server().Run(absl::StrCat("ping ", v6 ? "-6 " : "", "-c1 -W1 ",
                                     v6 ? kHostV6 : kHostV4, " >/dev/null 2>&1")) == 0;
}

json Crowdsec(Daemon& d) { return d.Status().value("crowdsec", json::object()); }

// Milliseconds until `pred` holds (the test fails past `limit_ms`, scaled).
int64_t MsUntil(const std::function<bool()>& pred, int limit_ms) {
  auto t0 = std::chrono::steady_clock::now();
  bool ok = WaitFor(pred, limit_ms);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(ok);
  return ms;
}

TEST_CASE("crowdsec: a decision added with cscli is enforced within one poll interval and lifted when deleted",
          "[host-tools]") {
  RequireCrowdsec();
  Topology t;
  CrowdsecLapi lapi(t.host(), t.dir() + "/crowdsec");
  lapi.AddBouncer("bannerwatch");
  Daemon d(t, CrowdsecPolicy(lapi.url(), lapi.key_file("bannerwatch")),
           {"--metrics", "127.0.0.1:9464"});
  d.Start();
  INFO("daemon log:\n" << d.log());
  REQUIRE(WaitFor([&] { return Crowdsec(d).value("up", false); }, 5000));
  CHECK(Crowdsec(d)["url"] == lapi.url());
  REQUIRE(Reaches(t));
  REQUIRE(Reaches(t, true));

  // A ban on the server's address: dropped within one poll (1 s; the wait allows 3, scaled).
  lapi.Cscli(absl::StrCat("decisions add --ip ", kServerV4, " --duration 1h --reason bwtest-v4"));
  int64_t ms = MsUntil([&] { return !Reaches(t); }, 3000);
  WARN("decision to enforcement (IPv4): " << ms << " ms, poll 1 s (each check takes up to 1 s)");
  std::string q;
  CHECK(d.Cli(absl::StrCat("query ", kServerV4), &q) == 0);
  CHECK(absl::StrContains(q, "list 'crowdsec'"));
  CHECK(absl::StrContains(q, absl::StrCat("crowdsec decision ")));
  CHECK(absl::StrContains(q, lapi.url()));
  // The block event names the list and the decision's scenario.
  REQUIRE(WaitFor([&] {
    for (const json& e : d.EveLines())
      if (e["alert"]["signature_id"] == 1000148 && e["src_ip"] == kServerV4) return true;
    return false;
  }, 5000));
  for (const json& e : d.EveLines()) {
    if (e["alert"]["signature_id"] != 1000148 || e["src_ip"] != kServerV4) continue;
    CHECK(e["bannerwatch"]["list"] == "crowdsec");
    CHECK(e["bannerwatch"]["prefix"] == absl::StrCat(kServerV4, "/32"));
    CHECK(e["bannerwatch"]["source_id"] == "crowdsec: bwtest-v4");  // cscli's --reason: the scenario
    break;
  }
  // Metrics.
  int st = 0;
  std::string m = t.host().Out("curl -s http://127.0.0.1:9464/metrics", &st);
  CHECK(absl::StrContains(m, "bannerwatch_crowdsec_up 1\n"));
  CHECK(absl::StrContains(m, "bannerwatch_crowdsec_decisions 1\n"));
  CHECK(absl::StrContains(m, "bannerwatch_list_entries{list=\"crowdsec\",action=\"block\"} 1\n"));

  // Deleted: through again within one poll.
  lapi.Cscli(absl::StrCat("decisions delete --ip ", kServerV4));
  ms = MsUntil([&] { return Reaches(t); }, 3000);
  WARN("deletion to lifting (IPv4): " << ms << " ms");

  // IPv6, and a range.
  lapi.Cscli(absl::StrCat("decisions add --ip ", kServerV6, " --duration 1h"));
  MsUntil([&] { return !Reaches(t, true); }, 3000);
  CHECK(Reaches(t));
  lapi.Cscli(absl::StrCat("decisions delete --ip ", kServerV6));
  MsUntil([&] { return Reaches(t, true); }, 3000);
  lapi.Cscli("decisions add --range 198.51.100.0/28 --duration 1h");
  MsUntil([&] { return !Reaches(t); }, 3000);
  lapi.Cscli("decisions delete --range 198.51.100.0/28");
  MsUntil([&] { return Reaches(t); }, 3000);

  // Another type goes to the list that takes it: captcha -> the watch list, nothing dropped.
  lapi.Cscli(absl::StrCat("decisions add --ip ", kServerV4, " --duration 1h --type captcha"));
  REQUIRE(WaitFor([&] {
    std::string out;
    d.Cli(absl::StrCat("query ", kServerV4), &out);
    return absl::StrContains(out, "list 'crowdsec-captcha'");
  }, 3000));
  CHECK(Reaches(t));
  // A decision type no list takes is held but enforces nothing.
  lapi.Cscli(absl::StrCat("decisions add --ip ", kServerV6, " --duration 1h --type throttle"));
  REQUIRE(WaitFor([&] { return Crowdsec(d).value("decisions", 0) == 2; }, 3000));
  CHECK(Reaches(t, true));
  CHECK(d.Stop() == 0);
}

TEST_CASE("crowdsec: an unreachable API keeps the last good set and says so; each decision still ends on time",
          "[host-tools]") {
  RequireCrowdsec();
  Topology t;
  CrowdsecLapi lapi(t.host(), t.dir() + "/crowdsec");
  lapi.AddBouncer("bannerwatch");
  Daemon d(t, CrowdsecPolicy(lapi.url(), lapi.key_file("bannerwatch")));
  d.Start();
  INFO("daemon log:\n" << d.log());
  lapi.Cscli(absl::StrCat("decisions add --ip ", kServerV4, " --duration 1h"));
  lapi.Cscli(absl::StrCat("decisions add --ip ", kServerV6, " --duration 6s"));
  REQUIRE(WaitFor([&] { return !Reaches(t) && !Reaches(t, true); }, 4000));

  lapi.Stop();
  REQUIRE(WaitFor([&] { return !Crowdsec(d).value("up", true); }, 4000));
  json cs = Crowdsec(d);
  CHECK(cs["consecutive_failures"].get<int>() >= 1);
  CHECK(absl::StrContains(cs["last_error"].get<std::string>(), "Couldn't connect"));
  CHECK(cs["decisions"] == 2);
  CHECK(absl::StrContains(d.log(), "keeping the 2 decisions held"));
  // The ban holds while the API is away ...
  for (int i = 0; i < 3; ++i) CHECK_FALSE(Reaches(t));
  // ... and the 6 s one ends when it should, without the API telling.
  REQUIRE(WaitFor([&] { return Reaches(t, true); }, 8000));
  CHECK(Crowdsec(d)["decisions"] == 1);
  CHECK(Crowdsec(d)["expired"] == 1);
  CHECK_FALSE(Reaches(t));

  // Back: the whole set asked again, then deltas.
  lapi.Start();
  REQUIRE(WaitFor([&] { return Crowdsec(d).value("up", false); }, 5000));
  CHECK_FALSE(Reaches(t));
  lapi.Cscli(absl::StrCat("decisions delete --ip ", kServerV4));
  CHECK(WaitFor([&] { return Reaches(t); }, 3000));
  CHECK(d.Stop() == 0);
}

TEST_CASE("crowdsec: a restart with keep_on_exit carries the decisions over, with the API away: nothing passes",
          "[host-tools]") {
  RequireCrowdsec();
  Topology t;
  CrowdsecLapi lapi(t.host(), t.dir() + "/crowdsec");
  lapi.AddBouncer("bannerwatch");
  Daemon d(t, "keep_on_exit: true\n" + CrowdsecPolicy(lapi.url(), lapi.key_file("bannerwatch")));
  d.Start();
  INFO("daemon log:\n" << d.log());
  lapi.Cscli(absl::StrCat("decisions add --ip ", kServerV4, " --duration 1h"));
  REQUIRE(WaitFor([&] { return !Reaches(t); }, 4000));
  lapi.Stop();
  // A prober sends through the stop and the start (20 per second for 6 s).
  std::string out = t.dir() + "/prober.txt";
  Process prober(&t.server(), {"sh", "-c", absl::StrCat("ping -i 0.05 -c 120 -W1 ", kHostV4, " > ", out)},
                 t.dir() + "/prober.log");
  Settle(500);
  CHECK(d.Stop() == 0);
  CHECK(std::filesystem::exists(t.dir() + "/crowdsec-decisions.json"));
  d.Start();
  CHECK(absl::StrContains(d.log(), "crowdsec: 1 decisions carried over from"));
  CHECK(Crowdsec(d)["decisions"] == 1);
  REQUIRE(prober.Wait(15000) >= 0);
  std::string result = ReadFile(out);
  INFO("prober:\n" << result);
  CHECK(absl::StrContains(result, "120 packets transmitted, 0 received"));
  std::string q;
  CHECK(d.Cli(absl::StrCat("query ", kServerV4), &q) == 0);
  CHECK(absl::StrContains(q, "list 'crowdsec'"));
  CHECK(d.Stop() == 0);
}

// A stand-in for the API that answers what <dir>/mode says, to make the answers no real API sends.
const char* kFakeApi = R"PY(
import http.server, sys, time, os
port, d = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        mode = open(os.path.join(d, 'mode')).read().strip()
        with open(os.path.join(d, 'requests'), 'a') as f: f.write(self.path + ' ' + self.headers.get('X-Api-Key', '') + '\n')
        if mode == 'stall':
            time.sleep(30); return
        code, body = 200, b''
        if mode == 'ban':
            body = b'{"new":[{"duration":"1h","id":1,"scenario":"s","scope":"Ip","type":"ban","value":"198.51.100.2"}],"deleted":null}'
        elif mode == 'garbage':
            body = b'<html>502 Bad Gateway</html>'
        elif mode == 'wrong':
            body = b'{"new":[{"id":"1","scope":"Ip","value":"198.51.100.2","type":"ban","duration":"1h"}]}'
        elif mode == 'forbidden':
            code, body = 403, b'{"message":"access forbidden"}'
        elif mode == 'server-error':
            code, body = 500, b'{}'
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(('127.0.0.1', port), H).serve_forever()
)PY";

TEST_CASE("crowdsec: answers that are not a decisions stream, a refused key or a stalled API change nothing enforced, and the daemon keeps answering",
          "[host-tools]") {
  Topology t;
  const std::string dir = t.dir() + "/fake-api";
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/api.py", kFakeApi);
  WriteFile(dir + "/mode", "ban\n");
  WriteFile(dir + "/key", "fake-key\n");
  Process api(&t.host(), {"python3", dir + "/api.py", "18081", dir}, dir + "/api.log");
  REQUIRE(WaitListening(t.host(), 18081, 5000));
  Daemon d(t, CrowdsecPolicy("http://127.0.0.1:18081", dir + "/key"));
  d.Start();
  INFO("daemon log:\n" << d.log());
  REQUIRE(WaitFor([&] { return !Reaches(t); }, 4000));
  // The key went in its header; the first request asked for the whole set, the next deltas.
  std::string req = ReadFile(dir + "/requests");
  CHECK(absl::StrContains(req, "/v1/decisions/stream?startup=true&scopes=ip,range fake-key\n"));
  REQUIRE(WaitFor([&] {
    return absl::StrContains(ReadFile(dir + "/requests"), "startup=false&scopes=ip,range fake-key");
  }, 3000));

  struct Bad {
    const char* mode;
    const char* says;
  };
  for (const Bad& b : {Bad{"garbage", "the answer is not JSON"},
                       Bad{"wrong", "new[0]: 'id' missing or of the wrong type"},
                       Bad{"forbidden", "HTTP 403 (the API does not accept the bouncer key"},
                       Bad{"server-error", "HTTP 500"},
                       Bad{"stall", "Operation timed out"}}) {
    INFO("mode " << b.mode);
    uint64_t failed = Crowdsec(d)["polls_failed"];
    WriteFile(dir + "/mode", std::string(b.mode) + "\n");
    REQUIRE(WaitFor([&] { return Crowdsec(d)["polls_failed"].get<uint64_t>() > failed; }, 5000));
    json cs = Crowdsec(d);
    INFO(cs.dump());
    CHECK(absl::StrContains(cs["last_error"].get<std::string>(), b.says));
    CHECK(cs["up"] == false);
    CHECK(cs["decisions"] == 1);
    CHECK_FALSE(Reaches(t));
    // The loop answers while the poller waits on the API: status within a deadline shorter than
    // the stall (30 s) and the request timeout (1 s).
    auto t0 = std::chrono::steady_clock::now();
    CHECK(d.Cli("status --json") == 0);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(ScaledMs(900)));
  }
  // A good answer again: up, and after a failure the whole set was asked for.
  WriteFile(dir + "/requests", "");
  WriteFile(dir + "/mode", "ban\n");
  REQUIRE(WaitFor([&] { return Crowdsec(d).value("up", false); }, 5000));
  CHECK(absl::StrContains(ReadFile(dir + "/requests"), "startup=true"));
  CHECK_FALSE(Reaches(t));
  CHECK(d.Stop() == 0);
  api.Signal(SIGTERM);
}

TEST_CASE("crowdsec: 100 000 decisions imported with cscli are enforced whole",
          "[host-tools]") {
  RequireCrowdsec();
  Topology t;
  CrowdsecLapi lapi(t.host(), t.dir() + "/crowdsec");
  lapi.AddBouncer("bannerwatch");
  // 99 999 addresses of 2001:db8:1::/64 and the server's own. Imported before the daemon starts:
  // CrowdSec 1.4's SQLite refused a bulk import while a bouncer polled ("database is locked").
  std::string csv = "duration,scope,value\n";
  for (int i = 0; i < 99999; ++i)
    absl::StrAppend(&csv, "4h,ip,2001:db8:1::", absl::Hex(i >> 16), ":", absl::Hex(i & 0xffff), "\n");
  absl::StrAppend(&csv, "4h,ip,", kServerV6, "\n");
  WriteFile(t.dir() + "/bulk.csv", csv);
  auto t0 = std::chrono::steady_clock::now();
  lapi.Cscli(absl::StrCat("decisions import -i ", t.dir(), "/bulk.csv"));
  auto imported = std::chrono::steady_clock::now();
  REQUIRE(Reaches(t, true));

  Daemon d(t, CrowdsecPolicy(lapi.url(), lapi.key_file("bannerwatch"), "30s"));
  d.Start();
  auto started = std::chrono::steady_clock::now();
  INFO("daemon log:\n" << d.log());
  REQUIRE(WaitFor([&] { return Crowdsec(d).value("decisions", 0) == 100000; }, 30000));
  auto held = std::chrono::steady_clock::now();
  CHECK_FALSE(Reaches(t, true));
  CHECK(Reaches(t));
  json st = d.Status();
  CHECK(st["prefixes"]["v6"] == 100000);
  auto ms = [](auto a, auto b) { return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count(); };
  WARN("cscli import of 100000 decisions: " << ms(t0, imported) << " ms; the daemon held and "
       "applied them " << ms(started, held) << " ms after its control socket answered; log:\n"
       << d.log());
  CHECK(d.Stop() == 0);
}

}  // namespace
}  // namespace bw::test
