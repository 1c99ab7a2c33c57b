// CrowdSec as a decision source, without the API: Go durations as CrowdSec writes them, the
// decisions stream's answers (CrowdSec 1.4.6's shapes: null for "none", scope "Ip"/"Range",
// negative durations for deleted decisions), the set of decisions held (startup answers replace,
// deltas add and delete by id, expiry by each decision's own duration, one entry per prefix), the
// policy's `crowdsec:` section and `source: crowdsec` lists with every error they can have, and
// the reloader's citation of a decision.
#include <catch2/catch.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/policy/crowdsec_decisions.hpp"
#include "daemon/policy/policy.hpp"
#include "lib/test_util.hpp"

namespace bw {
namespace {

using test::TempDir;

TEST_CASE("crowdsec: Go durations as CrowdSec writes them") {
  struct Row {
    const char* text;
    absl::Duration want;
  };
  const Row good[] = {
      {"0s", absl::ZeroDuration()},
      {"0", absl::ZeroDuration()},
      {"1h", absl::Hours(1)},
      {"3h59m58s", absl::Hours(3) + absl::Minutes(59) + absl::Seconds(58)},
      {"59m58.893345877s", absl::Minutes(59) + absl::Nanoseconds(58893345877)},
      {"1m59.5s", absl::Minutes(1) + absl::Milliseconds(59500)},
      {"-15.216201ms", -absl::Nanoseconds(15216201)},
      {"1.5h", absl::Minutes(90)},
      {"250us", absl::Microseconds(250)},
      {"250\xc2\xb5s", absl::Microseconds(250)},
      {"7ns", absl::Nanoseconds(7)},
      {"+2m", absl::Minutes(2)},
  };
  for (const Row& r : good) {
    INFO(r.text);
    auto d = ParseGoDuration(r.text);
    REQUIRE(d.ok());
    CHECK(absl::AbsDuration(*d - r.want) < absl::Nanoseconds(2));
  }
  for (const char* bad : {"", "-", "h", "1", "1x", "1h2", ".s", "1 h", "1h-2m",
                          "99999999999999999999h"}) {
    INFO(bad);
    CHECK_FALSE(ParseGoDuration(bad).ok());
  }
}

const char* kStartup = R"({"deleted":null,"new":[
 {"duration":"1m59.89s","id":3,"origin":"cscli","scenario":"manual 'ban' from 'm'","scope":"Ip","type":"ban","value":"2001:db8::5"},
 {"duration":"29m58s","id":2,"origin":"cscli","scenario":"manual 'captcha' from 'm'","scope":"Range","type":"captcha","value":"203.0.113.0/24"},
 {"duration":"59m58s","id":1,"origin":"crowdsec","scenario":"crowdsecurity/ssh-bf","scope":"Ip","type":"ban","value":"198.51.100.7"},
 {"duration":"4h","id":4,"origin":"lists","scenario":"lists:firehol","scope":"Country","type":"ban","value":"FR"},
 {"duration":"4h","id":5,"origin":"cscli","scenario":"x","scope":"Ip","type":"ban","value":"not-an-address"},
 {"duration":"4h","id":6,"origin":"cscli","scenario":"x","scope":"ip","type":"Ban","value":"198.51.100.7"}
]})";

TEST_CASE("crowdsec: a startup answer, scopes not taken and values that do not parse are skipped and counted") {
  auto s = ParseDecisionStream(kStartup, {});
  REQUIRE(s.ok());
  CHECK(s->added.size() == 4u);
  CHECK(s->deleted.empty());
  CHECK(s->skipped_scope == 1u);  // Country
  CHECK(s->skipped_value == 1u);  // not-an-address
  CHECK(s->added[0].prefix.ToString() == "2001:db8::5/128");
  CHECK(s->added[1].prefix.ToString() == "203.0.113.0/24");
  CHECK(s->added[1].type == "captcha");
  CHECK(s->added[2].scenario == "crowdsec: crowdsecurity/ssh-bf");
  CHECK(s->added[3].type == "ban");  // "Ban": CrowdSec's names compared in lower case

  // Only ranges asked for: the three Ip decisions are skipped as scopes.
  auto r = ParseDecisionStream(kStartup, {.ip = false, .range = true});
  REQUIRE(r.ok());
  CHECK(r->added.size() == 1u);
  CHECK(r->skipped_scope == 5u);  // Country and the four Ip decisions

  auto none = ParseDecisionStream(R"({"deleted":null,"new":null})", {});
  REQUIRE(none.ok());
  CHECK(none->added.empty());
  CHECK(none->deleted.empty());
}

TEST_CASE("crowdsec: answers of the wrong shape are refused whole, naming what is wrong") {
  struct Row {
    const char* body;
    const char* says;
  };
  const Row rows[] = {
      {"", "not JSON"},
      {"<html>502 Bad Gateway</html>", "not JSON"},
      {"[]", "not a JSON object"},
      {R"({"new": {}})", "'new' is not an array"},
      {R"({"new": [1]})", "new[0]: not an object"},
      {R"({"new": [{"id": "7", "scope": "Ip", "value": "198.51.100.7", "type": "ban", "duration": "1h"}]})",
       "new[0]: 'id' missing or of the wrong type"},
      {R"({"new": [{"id": 7, "scope": "Ip", "value": "198.51.100.7", "type": "ban"}]})",
       "new[0]: 'duration' missing"},
      {R"({"new": [], "deleted": [{"id": 7, "scope": "Ip", "value": "198.51.100.7", "type": "ban", "duration": "soon"}]})",
       "deleted[0]: duration 'soon' is not a duration"},
      {R"({"new": [{"id": 7, "scope": 4, "value": "198.51.100.7", "type": "ban", "duration": "1h"}]})",
       "new[0]: 'scope' missing or of the wrong type"},
  };
  for (const Row& r : rows) {
    INFO(r.body);
    auto s = ParseDecisionStream(r.body, {});
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find(r.says) != absl::string_view::npos);
  }
}

std::vector<std::string> EntriesOf(const DecisionSet& set, const std::vector<std::string>& types) {
  std::vector<std::string> out;
  for (const DecisionSet::Entry& e : set.Entries(types))
    out.push_back(absl::StrCat(e.prefix.ToString(), "#", e.id));
  return out;
}

TEST_CASE("crowdsec: the decisions held: startup replaces, deltas add and delete by id, each expires by its own duration") {
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  DecisionSet set;
  auto start = ParseDecisionStream(kStartup, {});
  REQUIRE(start.ok());
  CHECK(set.Apply(*start, true, t0));
  CHECK(set.size() == 4u);
  // One entry per prefix: decisions 1 and 6 both ban 198.51.100.7, the lower id cites it.
  CHECK(EntriesOf(set, {"ban"}) ==
        std::vector<std::string>{"198.51.100.7/32#1", "2001:db8::5/128#3"});
  CHECK(EntriesOf(set, {"captcha"}) == std::vector<std::string>{"203.0.113.0/24#2"});
  CHECK(EntriesOf(set, {"ban", "captcha"}).size() == 3u);
  // The earliest end: decision 3, 1m59.89s after it was received.
  CHECK(set.NextExpiry() == t0 + absl::Milliseconds(119890));

  // A delta: decision 1 deleted (6 still bans the address), a new one added; a deleted decision
  // carries a negative duration.
  auto delta = ParseDecisionStream(R"({"deleted":[
    {"duration":"-15.2ms","id":1,"origin":"cscli","scenario":"s","scope":"Ip","type":"ban","value":"198.51.100.7"}],
    "new":[{"duration":"10s","id":9,"origin":"cscli","scenario":"s","scope":"Ip","type":"ban","value":"198.51.100.9"}]})",
                                   {});
  REQUIRE(delta.ok());
  CHECK(set.Apply(*delta, false, t0 + absl::Seconds(1)));
  CHECK(EntriesOf(set, {"ban"}) ==
        std::vector<std::string>{"2001:db8::5/128#3", "198.51.100.7/32#6", "198.51.100.9/32#9"});
  CHECK(set.NextExpiry() == t0 + absl::Seconds(11));
  // Deleting what is not held, or an empty delta, changes nothing.
  auto nothing = ParseDecisionStream(R"({"deleted":[
    {"duration":"-1s","id":77,"scenario":"s","scope":"Ip","type":"ban","value":"198.51.100.77"}],"new":null})", {});
  REQUIRE(nothing.ok());
  CHECK_FALSE(set.Apply(*nothing, false, t0 + absl::Seconds(2)));

  // Expiry: nothing before its time, decision 9 at 11 s, decision 3 at 1m59.89s.
  CHECK(set.Expire(t0 + absl::Seconds(10)) == 0u);
  CHECK(set.Expire(t0 + absl::Seconds(11)) == 1u);
  CHECK(EntriesOf(set, {"ban"}) == std::vector<std::string>{"2001:db8::5/128#3", "198.51.100.7/32#6"});
  CHECK(set.Expire(t0 + absl::Minutes(2)) == 1u);
  CHECK(set.size() == 2u);  // 2 (captcha, 30 min) and 6 (4 h)

  // A decision that arrives already ended is not held.
  auto ended = ParseDecisionStream(R"({"new":[
    {"duration":"-1s","id":10,"scenario":"s","scope":"Ip","type":"ban","value":"198.51.100.10"}]})", {});
  REQUIRE(ended.ok());
  CHECK_FALSE(set.Apply(*ended, false, t0));

  // A startup answer is the whole set: what it lacks goes.
  auto only = ParseDecisionStream(R"({"new":[
    {"duration":"1h","id":20,"scenario":"s","scope":"Range","type":"ban","value":"2001:db8:1::/48"}]})", {});
  REQUIRE(only.ok());
  CHECK(set.Apply(*only, true, t0));
  CHECK(EntriesOf(set, {"ban", "captcha"}) == std::vector<std::string>{"2001:db8:1::/48#20"});
  // An empty startup answer empties the set.
  auto empty = ParseDecisionStream(R"({"new":null,"deleted":null})", {});
  REQUIRE(empty.ok());
  CHECK(set.Apply(*empty, true, t0));
  CHECK(set.size() == 0u);
  CHECK(set.NextExpiry() == absl::InfiniteFuture());
}

TEST_CASE("crowdsec: the policy's section and source: crowdsec lists parse, the key read from its file") {
  TempDir d("bw-crowdsec");
  d.Write("key", "  0123456789abcdef\n");
  std::string path = d.Write("p.yaml", R"(crowdsec:
  url: http://127.0.0.1:8080
  key_file: key
  poll: 2s
  timeout: 5s
  resync: 5m
  scopes: [range]
lists:
  - name: cs-ban
    action: block
    source: crowdsec
  - name: cs-other
    action: watch
    source: crowdsec
    types: [captcha, Throttle]
    entries: [198.51.100.1]
)");
  auto p = LoadPolicyFile(path);
  INFO(p.status());
  REQUIRE(p.ok());
  CHECK(p->crowdsec.on());
  CHECK(p->crowdsec.url == "http://127.0.0.1:8080/");
  CHECK(p->crowdsec.key == "0123456789abcdef");
  CHECK(p->crowdsec.key_file == d.path() + "/key");
  CHECK(p->crowdsec.poll == absl::Seconds(2));
  CHECK(p->crowdsec.timeout == absl::Seconds(5));
  CHECK(p->crowdsec.resync == absl::Minutes(5));
  CHECK_FALSE(p->crowdsec.scope_ip);
  CHECK(p->crowdsec.scope_range);
  REQUIRE(p->lists.size() == 2u);
  CHECK(p->lists[0].crowdsec);
  CHECK(p->lists[0].crowdsec_types == std::vector<std::string>{"ban"});
  CHECK(p->lists[1].crowdsec_types == std::vector<std::string>{"captcha", "throttle"});
  CHECK(p->lists[1].entries.size() == 1u);

  // Defaults.
  std::string p2 = d.Write("p2.yaml", "crowdsec: {url: 'https://lapi.example:8080/', key_file: key}\n");
  auto q = LoadPolicyFile(p2);
  REQUIRE(q.ok());
  CHECK(q->crowdsec.poll == absl::Seconds(10));
  CHECK(q->crowdsec.timeout == absl::Seconds(30));
  CHECK(q->crowdsec.resync == absl::Minutes(10));
  CHECK(q->crowdsec.scope_ip);
  CHECK(q->crowdsec.scope_range);
}

TEST_CASE("crowdsec: every error in the section and its lists names file:line and what is wrong") {
  TempDir d("bw-crowdsec");
  d.Write("key", "k3y\n");
  d.Write("empty", "\n");
  d.Write("spaced", "two words\n");
  d.Write("huge", std::string(5000, 'k'));
  const std::string ok = "crowdsec:\n  url: http://127.0.0.1:8080/\n  key_file: key\n";
  struct Row {
    std::string yaml;
    int line;
    std::string says;
  };
  const std::vector<Row> rows = {
      {"crowdsec: {key_file: key}\n", 1, "missing key 'url'"},
      {"crowdsec: {url: 'http://127.0.0.1:8080/'}\n", 1, "missing key 'key_file'"},
      {"crowdsec:\n  url: ftp://127.0.0.1/\n  key_file: key\n", 2, "is not a Local API URL"},
      {"crowdsec:\n  url: 'http://127.0.0.1:8080/\\r\\nX: y'\n  key_file: key\n", 2, "is not a Local API URL"},
      {"crowdsec:\n  url: http://\n  key_file: key\n", 2, "is not a Local API URL"},
      {"crowdsec:\n  url: http://h/\n  key_file: nothere\n", 3, "nothere"},
      {"crowdsec:\n  url: http://h/\n  key_file: empty\n", 3, "expected one bouncer key"},
      {"crowdsec:\n  url: http://h/\n  key_file: spaced\n", 3, "expected one bouncer key"},
      {"crowdsec:\n  url: http://h/\n  key_file: huge\n", 3, "expected one bouncer key"},
      {ok + "  poll: 0s\n", 4, "crowdsec.poll: '0s' is not a duration from 100ms"},
      {ok + "  poll: often\n", 4, "crowdsec.poll: 'often' is not a duration"},
      {ok + "  timeout: 1h\n", 4, "crowdsec.timeout: '1h' is not a duration"},
      {ok + "  resync: 100ms\n", 4, "crowdsec.resync"},
      {ok + "  scopes: []\n", 4, "no scopes"},
      {ok + "  scopes: [ip, country]\n", 4, "crowdsec.scopes[1]: 'country' is not one of ip, range"},
      {ok + "  scopes: [ip, ip]\n", 4, "scope listed twice"},
      {ok + "  api_key: x\n", 4, "unknown key 'api_key'"},
      {"lists:\n  - name: a\n    action: block\n    source: crowdsec\n", 2,
       "source: crowdsec needs the policy's 'crowdsec:' section"},
      {ok + "lists:\n  - name: a\n    action: block\n    source: files\n", 7,
       "'files' is not one of crowdsec"},
      {ok + "lists:\n  - name: a\n    action: block\n    entries: []\n    types: [ban]\n", 8,
       "'types' is for lists with source: crowdsec"},
      {ok + "lists:\n  - name: a\n    action: block\n    source: crowdsec\n    types: []\n", 8,
       "no decision types"},
      {ok + "lists:\n  - name: a\n    action: block\n    source: crowdsec\n    types: [ban, ban]\n", 8,
       "type 'ban' is listed twice"},
      {ok + "lists:\n  - name: a\n    action: block\n    source: crowdsec\n    types: ['b a n']\n", 8,
       "is not a decision type"},
      {ok + "lists:\n  - name: a\n    action: block\n    source: crowdsec\n"
            "  - name: b\n    action: watch\n    source: crowdsec\n    types: [captcha, ban]\n",
       11, "type 'ban' is taken by list 'a' already"},
      {ok + "lists:\n  - name: a\n    action: watch\n    source: crowdsec\n    types: [ban]\n"
            "  - name: b\n    action: block\n    source: crowdsec\n",
       9, "type 'ban' (the default types) is taken by list 'a' already"},
  };
  for (const Row& r : rows) {
    std::string path = d.Write("p.yaml", r.yaml);
    auto p = LoadPolicyFile(path);
    INFO("policy:\n" << r.yaml);
    REQUIRE_FALSE(p.ok());
    std::string m(p.status().message());
    INFO("message: " << m);
    CHECK(m.rfind(absl::StrCat(path, ":", r.line, ": "), 0) == 0);
    CHECK(m.find(r.says) != std::string::npos);
    // The key never appears in a message.
    CHECK(m.find("k3y") == std::string::npos);
  }
}

}  // namespace
}  // namespace bw

namespace bw {
namespace {

TEST_CASE("crowdsec: the decisions held survive a save and load for the same API only, less what ended") {
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  DecisionSet set;
  auto start = ParseDecisionStream(kStartup, {});
  REQUIRE(start.ok());
  set.Apply(*start, true, t0);
  const std::string saved = set.Save("http://127.0.0.1:8080/");
  auto back = DecisionSet::Load(saved, "http://127.0.0.1:8080/", t0);
  REQUIRE(back.ok());
  CHECK(back->size() == 4u);
  CHECK(EntriesOf(*back, {"ban", "captcha"}) == EntriesOf(set, {"ban", "captcha"}));
  CHECK(back->NextExpiry() == t0 + absl::Seconds(119));  // whole seconds in the file
  // Decision 3 (1m59s) has ended by then.
  auto later = DecisionSet::Load(saved, "http://127.0.0.1:8080/", t0 + absl::Minutes(5));
  REQUIRE(later.ok());
  CHECK(later->size() == 3u);
  // Another API's file: nothing carried over, not an error.
  auto other = DecisionSet::Load(saved, "http://10.1.1.1:8080/", t0);
  REQUIRE(other.ok());
  CHECK(other->size() == 0u);
  for (const char* bad : {"", "[]", "{\"url\": 1}", "{\"url\": \"http://127.0.0.1:8080/\"}",
                          "{\"url\": \"http://127.0.0.1:8080/\", \"decisions\": [{\"id\": 1}]}",
                          "{\"url\": \"http://127.0.0.1:8080/\", \"decisions\": [{\"id\": 1, "
                          "\"type\": \"ban\", \"prefix\": \"300.1.1.1\", \"expires\": 1, "
                          "\"scenario\": \"\"}]}"}) {
    INFO(bad);
    CHECK_FALSE(DecisionSet::Load(bad, "http://127.0.0.1:8080/", t0).ok());
  }
}

}  // namespace
}  // namespace bw
