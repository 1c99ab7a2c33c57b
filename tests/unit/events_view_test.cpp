// `bannerwatch events`: the filters on real EVE lines of both schemas, the fast.log-like line, and
// the command line's errors.
#include "daemon/cli/events_view.hpp"

#include <catch2/catch.hpp>
#include <string>

#include "absl/time/time.h"
#include "daemon/cli/cli.hpp"

namespace bw {
namespace {

// As the daemon writes them (bannerwatch schema, then suricata-7's).
const std::string kBanner =
    R"({"timestamp":"2026-12-02T23:59:01.123456+0000","flow_id":1,"in_iface":"eth0","event_type":"alert","src_ip":"198.51.100.2","src_port":443,"dest_ip":"198.51.100.1","dest_port":40512,"proto":"TCP","direction":"to_client","alert":{"action":"allowed","gid":1,"signature_id":1000146,"rev":1,"signature":"ET POLICY SSH banner detected on TCP 443 likely proxy evasion","category":"Potential Corporate Privacy Violation","severity":1},"bannerwatch":{"kind":"banner","direction":"ingress","banner_side":"server","banner":"SSH-2.0-OpenSSH_9.2p1\r\n","match":"direct","tcp_flags":"18"}})";
const std::string kWatchV6 =
    R"({"timestamp":"2026-12-02T22:00:00.000001+0000","flow_id":2,"event_type":"alert","src_ip":"2001:db8:100::1","src_port":50000,"dest_ip":"2001:db8:7::9","dest_port":443,"proto":"TCP","direction":"to_server","alert":{"action":"allowed","gid":1,"signature_id":1000149,"rev":1,"signature":"bannerwatch watched address","category":"Misc activity","severity":3},"bannerwatch":{"kind":"watch","direction":"egress","list":"seed-2013-09","prefix":"2001:db8:7::/48","tags":["exfil"],"suppressed":0}})";
const std::string kStrict =
    R"({"timestamp":"2026-12-02T23:30:00.000000+0000","flow_id":3,"event_type":"alert","src_ip":"203.0.113.9","src_port":1234,"dest_ip":"198.51.100.1","dest_port":22,"proto":"TCP","direction":"to_server","alert":{"action":"blocked","gid":1,"signature_id":1000148,"rev":1,"signature":"bannerwatch blocked address","category":"Misc activity","severity":2,"metadata":{"tag":["bannerwatch.kind:block","bannerwatch.list:spamhaus-drop"]}}})";

TEST_CASE("events filter: sid, ip prefix, since, list, all of them at once") {
  EventFilter f;
  CHECK(f.MatchLine(kBanner));
  CHECK(f.MatchLine("not json"));  // the empty filter prints everything as it is

  f.sids = {1000146};
  CHECK(f.MatchLine(kBanner));
  CHECK(!f.MatchLine(kWatchV6));
  CHECK(!f.MatchLine("not json"));
  f.sids = {1000146, 1000149};
  CHECK(f.MatchLine(kWatchV6));

  f = EventFilter{};
  f.prefixes = {*ParseEventPrefix("2001:db8:7::/48")};
  CHECK(f.MatchLine(kWatchV6));  // the destination
  CHECK(!f.MatchLine(kBanner));
  f.prefixes.push_back(*ParseEventPrefix("198.51.100.2"));
  CHECK(f.MatchLine(kBanner));   // the source, as a host

  f = EventFilter{};
  f.since = absl::FromCivil(absl::CivilSecond(2026, 12, 2, 23, 0, 0), absl::UTCTimeZone());
  CHECK(f.MatchLine(kBanner));
  CHECK(!f.MatchLine(kWatchV6));

  f = EventFilter{};
  f.list = "seed-2013-09";
  CHECK(f.MatchLine(kWatchV6));
  CHECK(!f.MatchLine(kBanner));
  f.list = "spamhaus-drop";
  CHECK(f.MatchLine(kStrict));  // suricata-7: from alert.metadata.tag

  f.sids = {1000148};
  f.prefixes = {*ParseEventPrefix("203.0.113.0/24")};
  f.since = absl::FromCivil(absl::CivilSecond(2026, 12, 2, 23, 29, 59), absl::UTCTimeZone());
  CHECK(f.MatchLine(kStrict));
  f.sids = {1000146};
  CHECK(!f.MatchLine(kStrict));
}

TEST_CASE("events --fast: one fast.log-like line per alert") {
  CHECK(FastLine(kBanner) ==
        "12/02/2026-23:59:01.123456  [**] [1:1000146:1] ET POLICY SSH banner detected on TCP 443 "
        "likely proxy evasion [**] [Classification: Potential Corporate Privacy Violation] "
        "[Priority: 1] {TCP} 198.51.100.2:443 -> 198.51.100.1:40512 [allowed] "
        "banner=\"SSH-2.0-OpenSSH_9.2p1\"");
  CHECK(FastLine(kWatchV6) ==
        "12/02/2026-22:00:00.000001  [**] [1:1000149:1] bannerwatch watched address [**] "
        "[Classification: Misc activity] [Priority: 3] {TCP} [2001:db8:100::1]:50000 -> "
        "[2001:db8:7::9]:443 [allowed] list=seed-2013-09");
  CHECK(FastLine(kStrict).find("[blocked] list=spamhaus-drop") != std::string::npos);
  // ICMP: type and code where the ports go, as fast.log has them.
  CHECK(FastLine(R"({"timestamp":"2026-12-02T22:00:00.000001+0000","event_type":"alert",)"
                 R"("src_ip":"203.0.113.9","dest_ip":"198.51.100.1","proto":"ICMP","icmp_type":8,)"
                 R"("icmp_code":0,"alert":{"action":"blocked","gid":1,"signature_id":1000148,"rev":1,)"
                 R"("signature":"s","category":"c","severity":2}})")
            .find("{ICMP} 203.0.113.9:8 -> 198.51.100.1:0 [blocked]") != std::string::npos);
  CHECK(FastLine("{\"event_type\":\"stats\"}") == "{\"event_type\":\"stats\"}");
  CHECK(FastLine("garbage") == "garbage");
}

TEST_CASE("events --since: a duration back from now or an RFC 3339 time; errors name the option") {
  const absl::Time now = absl::FromUnixSeconds(1796000000);
  CHECK(*ParseSince("10m", now) == now - absl::Minutes(10));
  CHECK(*ParseSince("2026-12-02T23:00:00Z", now) ==
        absl::FromCivil(absl::CivilSecond(2026, 12, 2, 23, 0, 0), absl::UTCTimeZone()));
  CHECK(*ParseSince("2026-12-03T00:00:00+01:00", now) ==
        absl::FromCivil(absl::CivilSecond(2026, 12, 2, 23, 0, 0), absl::UTCTimeZone()));
  CHECK(!ParseSince("yesterday", now).ok());
  CHECK(!ParseSince("-5m", now).ok());
  CHECK(!ParseEventPrefix("198.51.100.0/33").ok());
}

TEST_CASE("events: the command line's filters, and its errors") {
  const char* ok[] = {"bannerwatch", "events", "--sid", "1000146", "--sid", "1000147", "--ip",
                      "198.51.100.0/24", "--since", "1h", "--list", "seed", "--fast", "--count", "5"};
  CommandLine c = ParseCommandLine(15, ok);
  REQUIRE(c.command == "events");
  CHECK(c.events_filter.sids == std::vector<int64_t>{1000146, 1000147});
  CHECK(c.events_filter.prefixes.size() == 1);
  CHECK(c.events_filter.since.has_value());
  CHECK(c.events_filter.list == "seed");
  CHECK(c.events_fast);
  CHECK(c.events_count == 5);
  CHECK(c.request["count"] == 1000);  // filtered: the whole ring, then the last 5 that match

  const char* bad_sid[] = {"bannerwatch", "events", "--sid", "x"};
  CommandLine b = ParseCommandLine(4, bad_sid);
  CHECK(b.exit_code == 2);
  CHECK(b.text.find("--sid: 'x' is not a signature id") != std::string::npos);
  const char* bad_ip[] = {"bannerwatch", "events", "--ip", "300.1.1.1"};
  CHECK(ParseCommandLine(4, bad_ip).exit_code == 2);
  const char* bad_since[] = {"bannerwatch", "events", "--since", "soon"};
  CommandLine s = ParseCommandLine(4, bad_since);
  CHECK(s.exit_code == 2);
  CHECK(s.text.find("--since") != std::string::npos);
}

}  // namespace
}  // namespace bw
