// List file parsers (daemon/policy/feeds.hpp): each format, detection, and every error naming file:line.
// All addresses are documentation ranges except the seed's own subnet.
#include <stdlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/policy/feeds.hpp"
#include "lib/test_util.hpp"

namespace bw {
namespace {

using test::TempDir;


Feed MustParse(const std::string& path, const std::string& content, FeedFormat f = FeedFormat::kAuto) {
  auto r = ParseFeed(path, content, f);
  INFO(r.status());
  REQUIRE(r.ok());
  return *r;
}

// The error for `content` parsed as `path`; checks it starts with "path:line: " and says `says`.
void ExpectError(const std::string& path, const std::string& content, int line, const std::string& says,
                 FeedFormat f = FeedFormat::kAuto) {
  auto r = ParseFeed(path, content, f);
  REQUIRE_FALSE(r.ok());
  std::string m(r.status().message());
  INFO(m);
  CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(m.rfind(path + ":" + std::to_string(line) + ": ", 0) == 0);
  CHECK(m.find(says) != std::string::npos);
}

TEST_CASE("feeds: plain list with comments, blanks, CRLF, BOM and both families") {
  const std::string text =
      "\xef\xbb\xbf# seed hosts, 2013-09-11\n"
      "\n"
      "37.9.53.12\n"
      "  37.9.53.40   # trailing comment\n"
      "37.9.53.0/24\r\n"
      "\t2001:db8::/32\n"
      "::ffff:198.51.100.7\n"
      "# end";
  Feed f = MustParse("seed.txt", text);
  CHECK(f.format == FeedFormat::kPlain);
  REQUIRE(f.entries.size() == 5);
  CHECK(f.entries[0].prefix.ToString() == "37.9.53.12/32");
  CHECK(f.entries[0].line == 3u);
  CHECK(f.entries[1].prefix.ToString() == "37.9.53.40/32");
  CHECK(f.entries[1].line == 4u);
  CHECK(f.entries[2].prefix.ToString() == "37.9.53.0/24");
  CHECK(f.entries[3].prefix.ToString() == "2001:db8::/32");
  CHECK(f.entries[4].prefix.ToString() == "198.51.100.7/32");
  CHECK(f.entries[4].line == 7u);
  for (const FeedEntry& e : f.entries) CHECK(e.source_id.empty());
  CHECK(MustParse("empty.txt", "").entries.empty());
  CHECK(MustParse("comments.txt", "# nothing\n\n# here\n").entries.empty());
}

TEST_CASE("feeds: plain list errors name file:line and reject the whole file") {
  const std::string good = "198.51.100.0/24\n203.0.113.0/24\n";
  ExpectError("bad.txt", good + "010.0.0.1\n", 3, "'010.0.0.1': IPv4 octet '010' has a leading zero");
  ExpectError("bad.txt", good + "198.51.100.300\n", 3, "octet 300 is greater than 255");
  ExpectError("bad.txt", good + "198.51.100.0/33\n", 3, "prefix length 33 is out of range");
  ExpectError("bad.txt", good + "2001:db8::/129\n", 3, "prefix length 129 is out of range");
  ExpectError("bad.txt", good + "198.51.100.0/+24\n", 3, "'+24' is not a decimal number");
  ExpectError("bad.txt", good + "198.51.100.0/ 24\n", 3, "whitespace");
  ExpectError("bad.txt", good + "198.51.100.0/24x\n", 3, "'24x' is not a decimal number");
  ExpectError("bad.txt", good + "198.51.100.1/24\n", 3, "host bits set: the network is 198.51.100.0/24");
  ExpectError("bad.txt", good + "/24\n", 3, "missing address before '/'");
  ExpectError("bad.txt", good + "0.0.0.0/0\n", 3, "allow_default_route");
  ExpectError("bad.txt", good + "198.51.100.0/24 ; SBL1\n", 3, "whitespace",
              FeedFormat::kPlain);
  ExpectError("bad.txt", good + "198.51.100.9 203.0.113.9\n", 3, "whitespace");
  ExpectError("bad.txt", good + "198.51.100.9\x07\n", 3, "non-printable byte 0x07");
  ExpectError("bad.txt", good + std::string("\0\x01\x02", 3) + "\n", 3, "binary data (NUL byte)");
  // An error on the last line still rejects everything before it.
  auto r = ParseFeed("bad.txt", good + "junk\n");
  CHECK_FALSE(r.ok());
  // /0 is accepted with the option.
  auto ok = ParseFeed("any.txt", "0.0.0.0/0\n", FeedFormat::kAuto, PrefixOptions{.allow_default_route = true});
  REQUIRE(ok.ok());
  CHECK(ok->entries.size() == 1);
}

TEST_CASE("feeds: Spamhaus DROP text") {
  const std::string text =
      "; Spamhaus DROP List 2024/01/24 - (c) 2024 The Spamhaus Project SLL\n"
      "; https://www.spamhaus.org/drop/drop.txt\n"
      "; Last-Modified: Wed, 24 Jan 2024 13:41:27 GMT\n"
      "; Expires: Thu, 25 Jan 2024 15:03:31 GMT\n"
      "198.51.100.0/24 ; SBL000001\n"
      "203.0.113.0/25;SBL000002\n"
      "2001:db8:100::/48 ; SBL000003\n";
  Feed f = MustParse("drop.txt", text);
  CHECK(f.format == FeedFormat::kSpamhausDrop);
  REQUIRE(f.entries.size() == 3);
  CHECK(f.entries[0].prefix.ToString() == "198.51.100.0/24");
  CHECK(f.entries[0].source_id == "SBL000001");
  CHECK(f.entries[0].line == 5u);
  CHECK(f.entries[1].source_id == "SBL000002");
  CHECK(f.entries[2].prefix.ToString() == "2001:db8:100::/48");
  CHECK(f.entries[2].line == 7u);

  ExpectError("drop.txt", "; x\n198.51.100.0/24 ;\n", 2, "missing source id after ';'");
  ExpectError("drop.txt", "; x\n198.51.100.0/24 ; SBL1 SBL2\n", 2, "is not one token");
  ExpectError("drop.txt", "; x\n198.51.100.0/24 ;; SBL1\n", 2, "is not one token");
  ExpectError("drop.txt", "; x\n198.51.100.1/24 ; SBL1\n", 2, "host bits set");
  ExpectError("drop.txt", "; x\n198.51.100.0/24 # SBL1\n", 2, "whitespace");
}

TEST_CASE("feeds: Spamhaus DROP JSON lines with metadata") {
  const std::string text =
      "{\"cidr\":\"198.51.100.0/24\",\"sblid\":\"SBL000001\",\"rir\":\"ripencc\"}\n"
      "{\"cidr\":\"203.0.113.0/24\",\"sblid\":\"SBL000002\",\"rir\":\"apnic\"}\n"
      "\n"
      "{\"cidr\":\"2001:db8::/32\",\"sblid\":\"SBL000003\",\"rir\":\"arin\",\"new\":1}\n"
      "{\"type\":\"metadata\",\"timestamp\":1706140802,\"size\":302,\"records\":3,"
      "\"copyright\":\"(c) example\",\"terms\":\"https://example.invalid/terms\"}\n";
  Feed f = MustParse("drop_v4.json", text);
  CHECK(f.format == FeedFormat::kSpamhausDropJson);
  REQUIRE(f.entries.size() == 3);
  CHECK(f.entries[0].prefix.ToString() == "198.51.100.0/24");
  CHECK(f.entries[0].source_id == "SBL000001");
  CHECK(f.entries[2].line == 4u);
  CHECK(f.meta_records == 3);
  CHECK(f.meta_timestamp == 1706140802);
  CHECK(f.meta_copyright == "(c) example");
  // Detected by content too.
  CHECK(MustParse("drop.feed", text).format == FeedFormat::kSpamhausDropJson);
  // Without metadata is fine; without sblid the source id is empty.
  CHECK(MustParse("x.json", "{\"cidr\":\"198.51.100.0/24\"}\n").entries[0].source_id.empty());

  ExpectError("x.json", "{\"cidr\":\"198.51.100.0/24\"}\n{\"cidr\":\n", 2, "not valid JSON");
  ExpectError("x.json", "{\"cidr\":\"198.51.100.0/24\"}\n[1,2]\n", 2, "expected a JSON object");
  ExpectError("x.json", "{\"sblid\":\"SBL1\"}\n", 1, "record has no \"cidr\"");
  ExpectError("x.json", "{\"cidr\":12}\n", 1, "\"cidr\" is not a string");
  ExpectError("x.json", "{\"cidr\":\"198.51.100.0/24\",\"sblid\":7}\n", 1, "\"sblid\" is not a string");
  ExpectError("x.json", "\n{\"cidr\":\"198.51.100.0/33\"}\n", 2, "out of range");
  ExpectError("x.json", "{\"type\":\"other\"}\n", 1, "unknown record type \"other\"");
  ExpectError("x.json",
              "{\"cidr\":\"198.51.100.0/24\"}\n{\"type\":\"metadata\",\"records\":2}\n", 2,
              "metadata says 2 records, the file has 1");
  ExpectError("x.json", "{\"type\":\"metadata\",\"records\":\"x\"}\n", 1,
              "\"records\" is not a non-negative integer");
  ExpectError("x.json", "{\"type\":\"metadata\"}\n{\"type\":\"metadata\"}\n", 2,
              "second metadata record");
}

TEST_CASE("feeds: FireHOL netset with a category header") {
  const std::string text =
      "#\n"
      "# example_level1\n"
      "#\n"
      "# ipv4 hash:net ipset\n"
      "#\n"
      "# Maintainer      : Example Maintainer\n"
      "# Maintainer URL  : https://example.invalid/\n"
      "# Category        : reputation\n"
      "# Version         : 1\n"
      "#\n"
      "198.51.100.0/24\n"
      "203.0.113.7\n";
  Feed f = MustParse("example_level1.netset", text);
  CHECK(f.format == FeedFormat::kFirehol);
  CHECK(f.category == "reputation");
  REQUIRE(f.entries.size() == 2);
  CHECK(f.entries[0].source_id == "reputation");
  CHECK(f.entries[1].source_id == "reputation");
  CHECK(f.entries[1].prefix.ToString() == "203.0.113.7/32");
  CHECK(f.entries[1].line == 12u);
  bool saw_maintainer = false;
  for (auto& [k, v] : f.header)
    if (k == "Maintainer") saw_maintainer = v == "Example Maintainer";
  CHECK(saw_maintainer);
  // Same content under another name: detected by the header.
  CHECK(MustParse("level1.txt", text).format == FeedFormat::kFirehol);
  CHECK(MustParse("level1.ipset", "198.51.100.1\n").format == FeedFormat::kFirehol);
  ExpectError("level1.netset", text + "203.0.113.999\n", 13, "greater than 255");
}

TEST_CASE("feeds: detection and format names") {
  CHECK(DetectFeedFormat("a.txt", "198.51.100.0/24\n") == FeedFormat::kPlain);
  CHECK(DetectFeedFormat("a.txt", "# x\n198.51.100.0/24 # c\n") == FeedFormat::kPlain);
  CHECK(DetectFeedFormat("a.txt", "; Spamhaus\n") == FeedFormat::kSpamhausDrop);
  CHECK(DetectFeedFormat("a.txt", "198.51.100.0/24 ; SBL1\n") == FeedFormat::kSpamhausDrop);
  CHECK(DetectFeedFormat("a.txt", "  {\"cidr\":\"198.51.100.0/24\"}\n") == FeedFormat::kSpamhausDropJson);
  CHECK(DetectFeedFormat("a.JSON", "") == FeedFormat::kSpamhausDropJson);
  CHECK(DetectFeedFormat("dir.json/a.txt", "198.51.100.1\n") == FeedFormat::kPlain);
  CHECK(DetectFeedFormat("a.netset", "") == FeedFormat::kFirehol);
  CHECK(DetectFeedFormat("a", "# Category : abuse\n198.51.100.1\n") == FeedFormat::kFirehol);
  for (FeedFormat f : {FeedFormat::kAuto, FeedFormat::kPlain, FeedFormat::kSpamhausDrop,
                       FeedFormat::kSpamhausDropJson, FeedFormat::kFirehol})
    CHECK(*ParseFeedFormat(FeedFormatName(f)) == f);
  CHECK_FALSE(ParseFeedFormat("csv").ok());
  // A forced format wins over detection.
  Feed f = MustParse("x.json", "198.51.100.0/24\n", FeedFormat::kPlain);
  CHECK(f.entries.size() == 1);
}

TEST_CASE("feeds: files on disk, an unreadable file names its path") {
  TempDir d("bw-feeds");
  std::string p = d.Write("seed.txt", "37.9.53.0/24\n37.9.53.12\n");
  auto f = LoadFeed(p);
  REQUIRE(f.ok());
  CHECK(f->path == p);
  CHECK(f->entries.size() == 2);
  std::string bad = d.Write("bad.txt", "37.9.53.0/24\n\n37.9.53.256\n");
  auto e = LoadFeed(bad);
  REQUIRE_FALSE(e.ok());
  CHECK(std::string(e.status().message()).rfind(bad + ":3: ", 0) == 0);
  auto missing = LoadFeed(d.Write("x", "") + ".nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find(".nope: cannot open: No such file or directory") !=
        absl::string_view::npos);
}

// Sets a file's access and modification times to `t` (so two versions look alike to stat).
void SetTimes(const std::string& path, const timespec& t) {
  timespec ts[2] = {t, t};
  REQUIRE(utimensat(AT_FDCWD, path.c_str(), ts, 0) == 0);
}

TEST_CASE("feeds: the cache parses a file again only when its content changed") {
  TempDir d("bw-feeds");
  std::string p = d.Write("seed.txt", "198.51.100.1\n198.51.100.2\n");
  struct stat before;
  REQUIRE(stat(p.c_str(), &before) == 0);
  FeedCacheStats s0 = GetFeedCacheStats();
  auto a = LoadFeedCached(p);
  REQUIRE(a.ok());
  CHECK((*a)->entries.size() == 2);
  auto b = LoadFeedCached(p);  // unchanged: the same parse
  REQUIRE(b.ok());
  CHECK(b->get() == a->get());
  FeedCacheStats s1 = GetFeedCacheStats();
  CHECK(s1.parses - s0.parses == 1);
  CHECK(s1.hits - s0.hits == 1);
  // Rewritten with the same size and the same times (as a rewrite within one second looks to
  // stat): noticed, because the content is compared, not the metadata.
  d.Write("seed.txt", "198.51.100.1\n198.51.100.9\n");
  SetTimes(p, before.st_mtim);
  struct stat after;
  REQUIRE(stat(p.c_str(), &after) == 0);
  REQUIRE(after.st_size == before.st_size);
  auto c = LoadFeedCached(p);
  REQUIRE(c.ok());
  REQUIRE((*c)->entries.size() == 2);
  CHECK((*c)->entries[1].prefix.ToString() == "198.51.100.9/32");
  // Another format or option is another parse; an error is returned, not cached.
  auto e = LoadFeedCached(p, FeedFormat::kPlain);
  REQUIRE(e.ok());
  CHECK(e->get() != c->get());
  d.Write("seed.txt", "198.51.100.1\n198.51.100.256\n");
  auto bad = LoadFeedCached(p);
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).rfind(p + ":2: ", 0) == 0);
  CHECK_FALSE(LoadFeedCached(p).ok());
  PruneFeedCache({});
}

// A pool of lines a plain list may hold: canonical IPv4 (the parser's fast path), the full path's
// forms (spaces, comments, CRLF, IPv6), comments and blank lines.
std::string RandomPlainLine(std::mt19937_64& rng) {
  auto r = [&](uint64_t n) { return static_cast<uint32_t>(rng() % n); };
  switch (r(16)) {
    case 0: return "# comment " + std::to_string(r(1000));
    case 1: return "";
    case 2: return absl::StrCat("  203.0.113.", r(256), "   # host ", r(100));
    case 3: return absl::StrCat("2001:db8:", absl::Hex(r(65536)), "::/48");
    case 4: return absl::StrCat("198.51.", r(256), ".0/24\r");
    case 5: return absl::StrCat("\t198.51.", r(256), ".", r(256));
    default: {
      uint32_t a = static_cast<uint32_t>(rng());
      unsigned len = 8 + r(25);
      a &= len == 32 ? ~0u : ~(~0u >> len);
      return absl::StrCat(a >> 24, ".", (a >> 16) & 255, ".", (a >> 8) & 255, ".", a & 255,
                          len == 32 && r(2) ? std::string() : absl::StrCat("/", len));
    }
  }
}

std::string JoinLines(const std::vector<std::string>& v, bool final_newline) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) absl::StrAppend(&s, v[i], i + 1 < v.size() || final_newline ? "\n" : "");
  return s;
}

void CheckSameEntries(const Feed& got, const Feed& want) {
  REQUIRE(got.format == want.format);
  REQUIRE(got.entries.size() == want.entries.size());
  size_t bad = 0;
  for (size_t i = 0; i < want.entries.size(); ++i)
    bad += !(got.entries[i].prefix == want.entries[i].prefix &&
             got.entries[i].line == want.entries[i].line &&
             got.entries[i].source_id == want.entries[i].source_id);
  CHECK(bad == 0);
}

TEST_CASE("feeds: a changed big plain list parsed as a diff equals a full parse") {
  TempDir d("bw-feeds-diff");
  std::mt19937_64 rng(11);
  auto r = [&](uint64_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<std::string> lines;
  size_t bytes = 0;
  while (bytes < (size_t{1} << 20) + 4096) {  // big enough to keep its text
    lines.push_back(RandomPlainLine(rng));
    bytes += lines.back().size() + 1;
  }
  PruneFeedCache({});
  std::string p = d.Write("feed.txt", JoinLines(lines, true));
  REQUIRE(LoadFeedCached(p).ok());
  uint64_t diffs = 0, fulls = 0;
  for (int round = 0; round < 40; ++round) {
    INFO("round " << round);
    // A handful of edits of every kind, some of them longer than the matcher's window.
    int edits = 1 + static_cast<int>(r(40));
    for (int e = 0; e < edits; ++e) {
      size_t at = r(lines.size() + 1);
      switch (r(7)) {
        case 0:  // one line removed
          if (at < lines.size()) lines.erase(lines.begin() + static_cast<long>(at));
          break;
        case 1:  // one line added
          lines.insert(lines.begin() + static_cast<long>(at), RandomPlainLine(rng));
          break;
        case 2:  // one line replaced
          if (at < lines.size()) lines[at] = RandomPlainLine(rng);
          break;
        case 3: {  // a long run removed
          size_t n = std::min(lines.size() - std::min(at, lines.size()), 1 + r(120));
          lines.erase(lines.begin() + static_cast<long>(at), lines.begin() + static_cast<long>(at + n));
          break;
        }
        case 4: {  // a long run added
          std::vector<std::string> run;
          for (size_t n = 1 + r(120); n > 0; --n) run.push_back(RandomPlainLine(rng));
          lines.insert(lines.begin() + static_cast<long>(at), run.begin(), run.end());
          break;
        }
        case 5:  // a line moved
          if (at < lines.size()) {
            std::string l = lines[at];
            lines.erase(lines.begin() + static_cast<long>(at));
            lines.insert(lines.begin() + static_cast<long>(r(lines.size() + 1)), l);
          }
          break;
        default:  // appended at the end
          lines.push_back(RandomPlainLine(rng));
          break;
      }
    }
    bool final_newline = r(4) != 0;
    std::string text = JoinLines(lines, final_newline);
    d.Write("feed.txt", text);
    FeedCacheStats s0 = GetFeedCacheStats();
    auto got = LoadFeedCached(p);
    INFO(got.status());
    REQUIRE(got.ok());
    FeedCacheStats s1 = GetFeedCacheStats();
    diffs += s1.diffs - s0.diffs;
    fulls += s1.parses - s0.parses;
    CheckSameEntries(**got, MustParse(p, text));
  }
  // Small changes to a big list are diffs (a rare one may touch too much and parse in full).
  CHECK(diffs >= 35);
  CHECK(diffs + fulls == 40);

  // A bad line among the changes: the full parse's error, and nothing cached; the next good
  // version is a diff against the last good text.
  std::vector<std::string> bad = lines;
  bad.insert(bad.begin() + static_cast<long>(r(bad.size())), "198.51.100.256");
  bad.erase(bad.begin() + static_cast<long>(r(bad.size())));
  std::string bad_text = JoinLines(bad, true);
  d.Write("feed.txt", bad_text);
  auto err = LoadFeedCached(p);
  REQUIRE_FALSE(err.ok());
  auto full_err = ParseFeed(p, bad_text);
  REQUIRE_FALSE(full_err.ok());
  CHECK(err.status() == full_err.status());
  lines.insert(lines.begin() + static_cast<long>(r(lines.size())), "203.0.113.77");
  std::string good = JoinLines(lines, true);
  d.Write("feed.txt", good);
  FeedCacheStats s0 = GetFeedCacheStats();
  auto ok = LoadFeedCached(p);
  REQUIRE(ok.ok());
  CHECK(GetFeedCacheStats().diffs - s0.diffs == 1);
  CheckSameEntries(**ok, MustParse(p, good));

  // The replaced feed's storage is kept for the next parse, unless the policy says not to; then
  // the text is not kept either, and a change is parsed whole.
  CHECK(GetFeedCacheStats().spare_bytes > 0);
  KeepFeedSpares(false);
  CHECK(GetFeedCacheStats().spare_bytes == 0);
  lines.push_back("203.0.113.78");
  std::string again = JoinLines(lines, true);
  d.Write("feed.txt", again);
  FeedCacheStats s1 = GetFeedCacheStats();
  auto no_spare = LoadFeedCached(p);
  REQUIRE(no_spare.ok());
  CHECK(GetFeedCacheStats().spare_bytes == 0);
  CHECK(GetFeedCacheStats().diffs == s1.diffs);
  CHECK(GetFeedCacheStats().parses == s1.parses + 1);
  CheckSameEntries(**no_spare, MustParse(p, again));
  KeepFeedSpares(true);

  // Everything moved: too much to match, parsed in full, still the same entries.
  std::shuffle(lines.begin(), lines.end(), rng);
  std::string shuffled = JoinLines(lines, true);
  d.Write("feed.txt", shuffled);
  s0 = GetFeedCacheStats();
  auto sh = LoadFeedCached(p);
  REQUIRE(sh.ok());
  CHECK(GetFeedCacheStats().parses - s0.parses == 1);
  CheckSameEntries(**sh, MustParse(p, shuffled));
  PruneFeedCache({});
}

}  // namespace
}  // namespace bw

namespace bw {
namespace {

/* Test that a big plain list (parsed in two halves on two threads, most lines on the fast path)
   gives what parsing it line by line gives: every entry, its line number, and the first error in
   file order whichever half it is in. */
TEST_CASE("feeds: a big plain list parses like line by line, errors in either half") {
  std::string text = "\xef\xbb\xbf# big list\n";
  std::vector<std::pair<std::string, uint32_t>> want;  // (prefix, line)
  uint32_t line = 1;
  uint32_t x = 12345;
  while (text.size() < (size_t{3} << 20)) {
    x = x * 1103515245u + 12345u;
    ++line;
    std::string l;
    switch (x % 7) {
      case 0: l = absl::StrCat("198.51.", (x >> 8) % 256, ".0/24"); break;
      case 1: l = absl::StrCat("  203.0.113.", (x >> 8) % 256, "  # host"); break;
      case 2: l = absl::StrCat("2001:db8:", absl::Hex((x >> 8) % 65536), "::/48"); break;
      case 3: l = "# comment"; break;
      case 4: l = ""; break;
      case 5: l = absl::StrCat("192.0.2.", (x >> 8) % 256, "\r"); break;
      default: l = absl::StrCat("10.", (x >> 8) % 256, ".0.0/16"); break;
    }
    text += l + "\n";
    auto data = l.substr(0, l.find('#'));
    while (!data.empty() && (data.back() == ' ' || data.back() == '\r')) data.pop_back();
    while (!data.empty() && data.front() == ' ') data.erase(0, 1);
    if (!data.empty()) want.emplace_back(ParsePrefix(data)->ToString(), line);
  }
  Feed f = MustParse("big.txt", text, FeedFormat::kPlain);
  REQUIRE(f.entries.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO(i);
    CHECK(f.entries[i].prefix.ToString() == want[i].first);
    CHECK(f.entries[i].line == want[i].second);
  }
  // An error near the end (the second half) and one near the start (the first half, which wins).
  std::string late = text + "198.51.100.1/24\n";
  ExpectError("big.txt", late, static_cast<int>(line) + 1, "host bits set", FeedFormat::kPlain);
  std::string early = text;
  early.insert(early.find('\n') + 1, "010.0.0.1\n");
  ExpectError("big.txt", early + "198.51.100.1/24\n", 2, "leading zero", FeedFormat::kPlain);
  std::string nul = text + std::string("198.51.100.0\0/24\n", 17);
  ExpectError("big.txt", nul, static_cast<int>(line) + 1, "NUL", FeedFormat::kPlain);
}

}  // namespace
}  // namespace bw

namespace bw {
namespace {

// A list file that is a FIFO once blocked `check` and reloads forever (SIGTERM ignored until it
// was fed); /dev/zero grew memory until std::bad_alloc, with no file named. Both are refused
// without reading, and so is a regular file over limits.file_bytes.
TEST_CASE("feeds: only regular files within the size limit are read") {
  TempDir tmp;
  const std::string fifo = tmp.path() + "/list.fifo";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  auto r = ReadWholeFile(fifo);  // returns at once: no writer is waited for
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()) ==
        fifo + ": is a FIFO; policy and list files must be regular files");
  r = ReadWholeFile("/dev/zero");
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()).find("is a character device") != std::string::npos);
  r = ReadWholeFile(tmp.path());
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()).find("is a directory") != std::string::npos);

  const std::string big = tmp.path() + "/big.txt";
  std::ofstream(big) << std::string(5000, '#') << "\n203.0.113.0/24\n";
  r = ReadWholeFile(big, 4096);
  REQUIRE_FALSE(r.ok());
  CHECK(std::string(r.status().message()).find("over the limit of 4096 (limits.file_bytes)") !=
        std::string::npos);
  r = ReadWholeFile(big, 8192);
  REQUIRE(r.ok());
  CHECK(r->size() == 5016u);
  auto f = LoadFeedCached(big, FeedFormat::kAuto, PrefixOptions{}, 4096);
  CHECK_FALSE(f.ok());
  // Through a symlink to a regular file: read (the target is what counts).
  const std::string link = tmp.path() + "/link.txt";
  REQUIRE(symlink(big.c_str(), link.c_str()) == 0);
  CHECK(ReadWholeFile(link).ok());
}

}  // namespace
}  // namespace bw
