// The control socket's command table (control_request.hpp): what an operator's CLI sends is
// accepted as it was before, and every request of the wrong shape, type or size is refused with
// a reply that names the field, without an exception. The live daemon's side (it stays up and
// answers) is tests/integration/daemon_test.cpp.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/control/control_request.hpp"

namespace bw::test {
namespace {

using json = nlohmann::json;

TEST_CASE("control requests: what the CLI sends is accepted, typed") {
  auto r = ParseControlRequest(json::parse(
      R"({"cmd":"block","cidr":"203.0.113.0/24","list":"c2.feed","reason":"seen beaconing","ttl_seconds":43200})"));
  REQUIRE(r.ok());
  CHECK(r->cmd == "block");
  CHECK(r->cidr == "203.0.113.0/24");
  CHECK(r->list == "c2.feed");
  CHECK(r->reason == "seen beaconing");
  CHECK(r->ttl_seconds == 43200);

  r = ParseControlRequest(json::parse(R"({"cmd":"events","follow":true,"count":7})"));
  REQUIRE(r.ok());
  CHECK(r->follow);
  CHECK(r->count == 7u);
  r = ParseControlRequest(json::parse(R"({"cmd":"events"})"));
  REQUIRE(r.ok());
  CHECK_FALSE(r->follow);
  CHECK(r->count == 50u);
  for (const char* ok : {R"({"cmd":"status"})", R"({"cmd":"reload"})",
                         R"({"cmd":"unlist","cidr":"2001:db8::/32"})",
                         R"({"cmd":"query","ip":"37.9.53.40"})",
                         R"({"cmd":"allow","cidr":"198.51.100.8"})"}) {
    INFO(ok);
    CHECK(ParseControlRequest(json::parse(ok)).ok());
  }
}

TEST_CASE("control requests: wrong types, sizes and fields are refused, naming the field") {
  struct Case {
    const char* request;
    const char* says;  // part of the error
  };
  // The first nine are type confusions that each used to end the daemon.
  const std::vector<Case> cases = {
      {R"({"cmd":"block","cidr":"203.0.113.0/24","ttl_seconds":"12h"})", "\"ttl_seconds\" must be a whole number"},
      {R"({"cmd":"events","count":"abc"})", "\"count\" must be a whole number"},
      {R"({"cmd":"events","follow":"yes"})", "\"follow\" must be true or false"},
      {R"({"cmd":"block","cidr":12345})", "\"cidr\" must be a string"},
      {R"({"cmd":"block","cidr":"203.0.113.0/24","list":7})", "\"list\" must be a string"},
      {R"({"cmd":"query","ip":null})", "\"ip\" must be a string"},
      {R"({"cmd":"block","cidr":"203.0.113.0/24","reason":["x"]})", "\"reason\" must be a string"},
      {R"({"cmd":"unlist","cidr":{"a":1}})", "\"cidr\" must be a string"},
      {R"({"cmd":"events","count":-1})", "\"count\" must be from 0 to 1000"},
      // Shapes.
      {R"([1,2,3])", "must be a JSON object"},
      {R"("status")", "must be a JSON object"},
      {R"({"command":"status"})", "needs \"cmd\", a string"},
      {R"({"cmd":7})", "needs \"cmd\", a string"},
      {R"({"cmd":"shutdown"})", "unknown command 'shutdown'"},
      {R"({"cmd":"block"})", "block: needs \"cidr\""},
      {R"({"cmd":"query"})", "query: needs \"ip\""},
      {R"({"cmd":"status","verbose":true})", "status: takes no field \"verbose\""},
      {R"({"cmd":"block","cidr":"203.0.113.0/24","ttl":5})", "takes no field \"ttl\""},
      // Bounds and content.
      {R"({"cmd":"events","count":1e3})", "\"count\" must be a whole number"},
      {R"({"cmd":"events","count":18446744073709551615})", "\"count\" must be from 0 to 1000"},
      {R"({"cmd":"block","cidr":"203.0.113.0/24","ttl_seconds":0})", "\"ttl_seconds\" must be from 1"},
      {R"({"cmd":"block","cidr":"203.0.113.0/24","ttl_seconds":-5})", "\"ttl_seconds\" must be from 1"},
      {R"({"cmd":"block","cidr":"203.0.113.0/24","list":"bad name"})", "\"list\" must be 1 to 64 characters"},
      {R"({"cmd":"block","cidr":"203.0.113.0/24","list":""})", "\"list\" must be 1 to 64 bytes long"},
      {R"({"cmd":"block","cidr":"203.0.113.0/24","reason":"a\u001b[31mred"})", "\"reason\" must not hold control characters"},
      {R"({"cmd":"block","cidr":"203.0.113.0/24","reason":"line\nbreak"})", "\"reason\" must not hold control characters"},
  };
  for (const Case& c : cases) {
    INFO(c.request);
    auto r = ParseControlRequest(json::parse(c.request));
    REQUIRE_FALSE(r.ok());
    CHECK(std::string(r.status().message()).find(c.says) != std::string::npos);
  }
  // Long strings are refused by size before anything else reads them.
  json big = {{"cmd", "block"}, {"cidr", "203.0.113.0/24"}, {"reason", std::string(513, 'x')}};
  auto r = ParseControlRequest(big);
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()).find("0 to 512 bytes") != std::string::npos);
  big = {{"cmd", "block"}, {"cidr", "203.0.113.0/24"}, {"list", std::string(500000, 'a')}};
  CHECK_FALSE(ParseControlRequest(big).ok());
}

// A re-run of `block CIDR --ttl X` without --reason once cleared the entry's reason: the daemon
// could not tell a reason not given from an empty one.
TEST_CASE("control requests: a reason not given differs from an empty one") {
  auto r = ParseControlRequest(json::parse(R"({"cmd":"block","cidr":"203.0.113.0/24","ttl_seconds":60})"));
  REQUIRE(r.ok());
  CHECK_FALSE(r->reason.has_value());
  r = ParseControlRequest(json::parse(R"({"cmd":"watch","cidr":"203.0.113.0/24","reason":""})"));
  REQUIRE(r.ok());
  REQUIRE(r->reason.has_value());
  CHECK(r->reason->empty());
}

// `bannerwatch list`: the runtime entries, which once could be seen only by reading state.json.
TEST_CASE("control requests: list takes no fields") {
  auto r = ParseControlRequest(json::parse(R"({"cmd":"list"})"));
  REQUIRE(r.ok());
  CHECK(r->cmd == "list");
  r = ParseControlRequest(json::parse(R"({"cmd":"list","cidr":"203.0.113.0/24"})"));
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()) == "list: takes no field \"cidr\"");
}

TEST_CASE("control requests: the list-name rule") {
  CHECK(ValidListName("runtime-block"));
  CHECK(ValidListName("seed-2013-09"));
  CHECK(ValidListName("c2.feed_v2"));
  CHECK(ValidListName(std::string(64, 'a')));
  CHECK_FALSE(ValidListName(std::string(65, 'a')));
  CHECK_FALSE(ValidListName(""));
  CHECK_FALSE(ValidListName("bad name"));
  CHECK_FALSE(ValidListName("tab\there"));
  CHECK_FALSE(ValidListName("x/y"));
}

}  // namespace
}  // namespace bw::test
