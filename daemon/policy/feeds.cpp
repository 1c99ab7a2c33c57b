// feeds.cpp — list file parsers (see feeds.hpp for the contract).
#include "daemon/policy/feeds.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "maps/maps.hpp"

namespace bw {
namespace {

constexpr uint8_t kUtf8Bom[3] = {0xef, 0xbb, 0xbf};
// Plain lists at least this big are parsed on two threads (a thread costs ~50 us; a MiB of lines
// ~8 ms on one).
constexpr size_t kSplitBytes = size_t{1} << 20;
// Plain lists at least this big keep their text in the cache, and a change to them is parsed as a
// diff against it (LoadFeedCached).
constexpr size_t kDiffMinBytes = size_t{1} << 20;

// The length of the common prefix of a[0, n) and b[0, n).
size_t CommonPrefix(const char* a, const char* b, size_t n) {
  size_t i = 0;
  constexpr size_t kBlock = 256;
  while (i + kBlock <= n && std::memcmp(a + i, b + i, kBlock) == 0) i += kBlock;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

bool HasBom(absl::string_view s) { return s.size() >= 3 && std::memcmp(s.data(), kUtf8Bom, 3) == 0; }

absl::string_view Trim(absl::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

// Walks the lines of a file: strips a leading UTF-8 BOM and each line's trailing '\r'; a NUL byte
// anywhere is binary data and an error.
class Lines {
 public:
  explicit Lines(absl::string_view content) : rest_(content) {
    if (HasBom(rest_)) rest_.remove_prefix(3);
  }
  bool Next(absl::string_view* line) {
    if (rest_.empty()) return false;
    size_t nl = rest_.find('\n');
    absl::string_view l = rest_.substr(0, nl);
    rest_ = nl == absl::string_view::npos ? absl::string_view() : rest_.substr(nl + 1);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    ++number_;
    *line = l;
    return true;
  }
  uint32_t number() const { return number_; }

 private:
  absl::string_view rest_;
  uint32_t number_ = 0;
};

class Parser {
 public:
  Parser(absl::string_view path, const PrefixOptions& opts) : path_(path), opts_(opts) {}

  absl::Status Error(uint32_t line, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ":", line, ": ", what));
  }
  absl::Status LineCheck(uint32_t line, absl::string_view l) const {
    if (l.find('\0') != absl::string_view::npos)
      return Error(line, "binary data (NUL byte): not a text list");
    return absl::OkStatus();
  }
  absl::Status AddPrefix(Feed& f, uint32_t line, absl::string_view text, SourceId source_id) {
    auto p = ParsePrefix(text, opts_);
    if (!p.ok()) return Error(line, p.status().message());
    f.entries.push_back(FeedEntry{*p, line, source_id});
    return absl::OkStatus();
  }

  // Plain and FireHOL share the line syntax: '#' starts a comment, one prefix per line.
  absl::Status ParseHashComments(absl::string_view content, Feed& f, bool firehol) {
    if (HasBom(content)) content.remove_prefix(3);
    // A big plain list is parsed in two halves on two threads, split after a newline: the lines of
    // the second half are numbered from the newlines of the first. The first error in file order
    // wins, as in one pass. (FireHOL's header makes its lines depend on the ones before.)
    if (!firehol && content.size() >= kSplitBytes) {
      size_t mid = content.find('\n', content.size() / 2);
      if (mid != absl::string_view::npos && mid + 1 < content.size()) {
        absl::string_view a = content.substr(0, mid + 1), b = content.substr(mid + 1);
        std::vector<FeedEntry> second;
        absl::Status st_b;
        const size_t cap = f.entries.capacity();
        std::thread t([&] {
          size_t lines_a = static_cast<size_t>(std::count(a.begin(), a.end(), '\n'));
          second.reserve(cap > lines_a ? cap - lines_a : 0);
          st_b = ParseLines(b, static_cast<uint32_t>(lines_a) + 1, second, nullptr, nullptr);
        });
        absl::Status st_a = ParseLines(a, 1, f.entries, nullptr, nullptr);
        t.join();
        if (!st_a.ok()) return st_a;
        if (!st_b.ok()) return st_b;
        f.entries.insert(f.entries.end(), std::make_move_iterator(second.begin()),
                         std::make_move_iterator(second.end()));
        return absl::OkStatus();
      }
    }
    bool header_done = false;
    if (auto st = ParseLines(content, 1, f.entries, firehol ? &f : nullptr, &header_done); !st.ok())
      return st;
    if (firehol && !f.category.empty()) {
      SourceId id(f.category);
      for (FeedEntry& e : f.entries) e.source_id = id;
    }
    return absl::OkStatus();
  }

  // The lines of `content` (no BOM), the first numbered `first_line`, into `out`. A line that is
  // exactly a canonical IPv4 address or prefix (most of a big list) takes the fast path; any other
  // goes through the full handling (NUL check, comment, trimming, the strict parser's messages).
  // `header`: FireHOL, whose '#' lines before the first entry are header fields.
  absl::Status ParseLines(absl::string_view content, uint32_t first_line, std::vector<FeedEntry>& out,
                          Feed* header, bool* header_done) const {
    const char* p = content.data();
    const char* end = p + content.size();
    uint32_t n = first_line;
    for (; p < end; ++n) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      const char* le = nl ? nl : end;
      absl::string_view l(p, static_cast<size_t>(le - p));
      p = nl ? nl + 1 : end;
      if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
      if (std::optional<Prefix> fast = ParseV4Canonical(l, true, opts_)) {
        out.push_back(FeedEntry{*fast, n, SourceId()});
        if (header_done) *header_done = true;
        continue;
      }
      if (auto st = LineCheck(n, l); !st.ok()) return st;
      size_t hash = l.find('#');
      if (header && hash != absl::string_view::npos && !*header_done &&
          Trim(l.substr(0, hash)).empty())
        ParseHeaderLine(l.substr(hash + 1), *header);
      absl::string_view data = Trim(l.substr(0, hash));
      if (data.empty()) continue;
      if (header_done) *header_done = true;
      auto pre = ParsePrefix(data, opts_);
      if (!pre.ok()) return Error(n, pre.status().message());
      out.push_back(FeedEntry{*pre, n, SourceId()});
    }
    return absl::OkStatus();
  }

  struct Line {
    const char *b, *e, *next;  // text [b, e) without '\n'; the next line's start
  };
  // The first line start in [from, from + limit) of [from, end) where the lines `v[0]`, `v[1]`
  // and `v[2]` (those of them that exist: `more(k)` makes v[k] exist, false at the file's end)
  // follow one another; nullptr if none. v[0] must end with a newline. Counts the bytes searched
  // against *spent.
  template <typename More>
  static const char* FindLineAhead(const char* from, const char* end, const Line* v, More more,
                                   size_t limit, size_t* spent) {
    const Line& l0 = v[0];
    if (l0.e == l0.next) return nullptr;  // the file's unterminated last line
    size_t len = static_cast<size_t>(l0.next - l0.b);  // with its '\n'
    const char* stop = from + std::min(limit, static_cast<size_t>(end - from));
    const char* p = from;
    while (p < stop) {
      const char* hay_end = static_cast<size_t>(end - stop) > len ? stop + len : end;
      const void* h = memmem(p, static_cast<size_t>(hay_end - p), l0.b, len);
      if (!h) break;
      const char* q = static_cast<const char*>(h);
      p = q + 1;
      if (q != from && q[-1] != '\n') continue;  // not at a line start
      const char* next = q + len;
      bool follows = true;
      for (size_t k = 1; k <= 2 && follows && more(k); ++k) {
        size_t n = static_cast<size_t>(v[k].next - v[k].b);
        follows = static_cast<size_t>(end - next) >= n && std::memcmp(next, v[k].b, n) == 0;
        next += n;
      }
      if (follows) {
        *spent -= std::min(*spent, static_cast<size_t>(q - from));
        return q;
      }
    }
    *spent -= std::min(*spent, static_cast<size_t>(stop - from));
    return nullptr;
  }

  // A plain list `now` parsed against the same file's previous content `before` and its parse
  // `old` (plain; neither has a BOM). Lines equal in both, matched in order, keep their entries,
  // renumbered; only the other lines of `now` are parsed, so the entries and errors are a full
  // parse's (a kept line's text is the text its entry was parsed from, and a line's entry depends
  // on nothing else). Matching: runs of equal bytes up to a line end (memcmp), and where lines
  // differ, the nearest line within kWindow on either side that equals the other side's line
  // (lines removed or added); failing that, the nearest place within kFar bytes ahead on either
  // side where the other side's next three lines follow (a long run removed or added); failing
  // that, a replaced line. False when more than about an eighth of the file is parsed or dropped:
  // a full parse then pays better (`f` is to be discarded).
  absl::StatusOr<bool> ParsePlainDiff(absl::string_view before, const Feed& old,
                                      absl::string_view now, Feed& f) const {
    constexpr size_t kWindow = 32;
    constexpr size_t kFar = size_t{1} << 18;  // bytes searched ahead for a long run's end
    size_t far_budget = 4 * now.size() + kFar;  // bytes searched ahead in all: linear
    const std::vector<FeedEntry>& olds = old.entries;
    std::vector<FeedEntry>& out = f.entries;
    out.reserve(olds.size() + olds.size() / 64 + 64);
    size_t budget = now.size() / 8 + 4096;  // bytes parsed or dropped before giving up
    const char *ob = before.data(), *oe = ob + before.size();
    const char *nb = now.data(), *ne = nb + now.size();
    const char *po = ob, *pn = nb;
    uint32_t lo = 1, ln = 1;  // line numbers at po, pn
    size_t ei = 0;            // first old entry not yet kept or dropped
    // Old entries up to old line `last` (inclusive): kept, renumbered; or dropped.
    auto keep = [&](uint32_t last) {
      int64_t delta = int64_t{ln} - int64_t{lo};
      for (; ei < olds.size() && olds[ei].line <= last; ++ei) {
        FeedEntry e = olds[ei];
        e.line = static_cast<uint32_t>(int64_t{e.line} + delta);
        out.push_back(e);
      }
    };
    auto drop = [&](uint32_t last) {
      while (ei < olds.size() && olds[ei].line <= last) ++ei;
    };
    auto line_at = [](const char* p, const char* end) {
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      return nl ? Line{p, nl, nl + 1} : Line{p, end, end};
    };
    auto same = [](const Line& a, const Line& b) {
      return a.e - a.b == b.e - b.b && std::memcmp(a.b, b.b, static_cast<size_t>(a.e - a.b)) == 0;
    };
    while (po < oe && pn < ne) {
      size_t n = std::min(static_cast<size_t>(oe - po), static_cast<size_t>(ne - pn));
      size_t m = CommonPrefix(po, pn, n);
      if (m == static_cast<size_t>(oe - po) && m == static_cast<size_t>(ne - pn)) {
        keep(UINT32_MAX);  // the rest is the same
        return true;
      }
      if (const void* nl = memrchr(po, '\n', m)) {  // whole equal lines
        size_t run = static_cast<size_t>(static_cast<const char*>(nl) - po) + 1;
        uint32_t k = static_cast<uint32_t>(std::count(po, po + run, '\n'));
        keep(lo + k - 1);
        po += run, pn += run, lo += k, ln += k;
        continue;
      }
      // The lines at po and pn differ (or one of them is the file's unterminated last line).
      // The next kWindow + 1 lines on each side, found as the search needs them.
      Line ol[kWindow + 1], nw[kWindow + 1];
      size_t no = 0, nn = 0;
      auto upto = [&](Line* v, size_t& have, size_t d, const char* start, const char* end) {
        while (have <= d) {
          const char* q = have == 0 ? start : v[have - 1].next;
          if (q >= end) return false;
          v[have++] = line_at(q, end);
        }
        return true;
      };
      upto(ol, no, 0, po, oe);
      upto(nw, nn, 0, pn, ne);
      if (same(ol[0], nw[0])) {  // equal text, one without its newline at the end of the file
        keep(lo);
        po = ol[0].next, pn = nw[0].next, ++lo, ++ln;
        continue;
      }
      size_t d = 1;
      for (; d <= kWindow; ++d) {
        if (upto(ol, no, d, po, oe) && same(ol[d], nw[0])) {  // old lines [0, d) removed
          size_t bytes = static_cast<size_t>(ol[d].b - po);
          if (bytes > budget) return false;
          budget -= bytes;
          drop(lo + static_cast<uint32_t>(d) - 1);
          po = ol[d].b, lo += static_cast<uint32_t>(d);
          break;
        }
        if (upto(nw, nn, d, pn, ne) && same(nw[d], ol[0])) {  // new lines [0, d) added
          size_t bytes = static_cast<size_t>(nw[d].b - pn);
          if (bytes > budget) return false;
          budget -= bytes;
          if (auto st = ParseLines(absl::string_view(pn, bytes), ln, out, nullptr, nullptr); !st.ok())
            return st;
          pn = nw[d].b, ln += static_cast<uint32_t>(d);
          break;
        }
      }
      if (d <= kWindow) continue;
      // Not nearby: a long run removed or added? The nearest place ahead where the other side's
      // line and the two after it follow again, searched as bytes within kFar.
      const char* at = nullptr;
      bool removed = false;
      if (far_budget > 0) {
        const char* q = FindLineAhead(pn, ne, ol, [&](size_t k) { return upto(ol, no, k, po, oe); },
                                      std::min(kFar, far_budget), &far_budget);
        const char* r = FindLineAhead(po, oe, nw, [&](size_t k) { return upto(nw, nn, k, pn, ne); },
                                      std::min(kFar, far_budget), &far_budget);
        if (q && (!r || q - pn <= r - po)) {
          at = q;
        } else if (r) {
          at = r;
          removed = true;
        }
      }
      if (at && removed) {  // old lines [po, at) removed
        size_t bytes = static_cast<size_t>(at - po);
        if (bytes > budget) return false;
        budget -= bytes;
        uint32_t k = static_cast<uint32_t>(std::count(po, at, '\n'));
        drop(lo + k - 1);
        po = at, lo += k;
        continue;
      }
      if (at) {  // new lines [pn, at) added
        size_t bytes = static_cast<size_t>(at - pn);
        if (bytes > budget) return false;
        budget -= bytes;
        if (auto st = ParseLines(absl::string_view(pn, bytes), ln, out, nullptr, nullptr); !st.ok())
          return st;
        ln += static_cast<uint32_t>(std::count(pn, at, '\n'));
        pn = at;
        continue;
      }
      // Neither: the old line was replaced by the new one.
      size_t bytes = static_cast<size_t>(ol[0].next - po) + static_cast<size_t>(nw[0].next - pn);
      if (bytes > budget) return false;
      budget -= bytes;
      drop(lo);
      if (auto st = ParseLines(absl::string_view(pn, static_cast<size_t>(nw[0].next - pn)), ln, out,
                               nullptr, nullptr);
          !st.ok())
        return st;
      po = ol[0].next, pn = nw[0].next, ++lo, ++ln;
    }
    // What is left of `now` is new (what is left of `before` was removed).
    if (static_cast<size_t>(ne - pn) > budget) return false;
    if (auto st = ParseLines(absl::string_view(pn, static_cast<size_t>(ne - pn)), ln, out, nullptr,
                             nullptr);
        !st.ok())
      return st;
    return true;
  }

  // "# Category        : reputation" -> ("Category", "reputation").
  static void ParseHeaderLine(absl::string_view body, Feed& f) {
    size_t colon = body.find(':');
    if (colon == absl::string_view::npos) return;
    absl::string_view key = Trim(body.substr(0, colon));
    absl::string_view val = Trim(body.substr(colon + 1));
    if (key.empty() || key.size() > 40) return;
    for (char c : key)
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != ' ' && c != '_' && c != '-')
        return;
    f.header.emplace_back(std::string(key), std::string(val));
    if (absl::EqualsIgnoreCase(key, "Category") && f.category.empty()) f.category = std::string(val);
  }

  absl::Status ParseSpamhausDrop(absl::string_view content, Feed& f) {
    Lines lines(content);
    absl::string_view l;
    while (lines.Next(&l)) {
      uint32_t n = lines.number();
      if (auto st = LineCheck(n, l); !st.ok()) return st;
      absl::string_view t = Trim(l);
      if (t.empty() || t[0] == ';') continue;
      size_t semi = t.find(';');
      absl::string_view cidr = Trim(t.substr(0, semi));
      std::string id;
      if (semi != absl::string_view::npos) {
        absl::string_view rest = Trim(t.substr(semi + 1));
        if (rest.empty()) return Error(n, "missing source id after ';' (expected \"CIDR ; SBL...\")");
        for (char c : rest)
          if (c == ' ' || c == '\t' || c == ';')
            return Error(n, absl::StrCat("source id ", QuoteForMessage(rest),
                                         " is not one token (expected \"CIDR ; SBL...\")"));
        id = std::string(rest);
      }
      if (cidr.empty()) return Error(n, "missing CIDR before ';'");
      if (auto st = AddPrefix(f, n, cidr, SourceId(id)); !st.ok()) return st;
    }
    return absl::OkStatus();
  }

  absl::Status ParseSpamhausJson(absl::string_view content, Feed& f) {
    Lines lines(content);
    absl::string_view l;
    uint32_t meta_line = 0;
    while (lines.Next(&l)) {
      uint32_t n = lines.number();
      if (auto st = LineCheck(n, l); !st.ok()) return st;
      absl::string_view t = Trim(l);
      if (t.empty()) continue;
      nlohmann::json j = nlohmann::json::parse(t.begin(), t.end(), nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) return Error(n, "not valid JSON (expected one JSON object per line)");
      if (!j.is_object()) return Error(n, "expected a JSON object");
      auto type = j.find("type");
      if (type != j.end()) {
        if (!type->is_string() || type->get<std::string>() != "metadata")
          return Error(n, absl::StrCat("unknown record type ", type->dump(),
                                       " (expected \"metadata\" or a record with \"cidr\")"));
        if (meta_line != 0)
          return Error(n, absl::StrCat("second metadata record (the first is on line ", meta_line, ")"));
        meta_line = n;
        if (auto st = ReadMeta(j, n, f); !st.ok()) return st;
        continue;
      }
      auto cidr = j.find("cidr");
      if (cidr == j.end()) return Error(n, "record has no \"cidr\"");
      if (!cidr->is_string()) return Error(n, "\"cidr\" is not a string");
      std::string id;
      auto sbl = j.find("sblid");
      if (sbl != j.end()) {
        if (!sbl->is_string()) return Error(n, "\"sblid\" is not a string");
        id = sbl->get<std::string>();
      }
      auto rir = j.find("rir");
      if (rir != j.end() && !rir->is_string()) return Error(n, "\"rir\" is not a string");
      const std::string& c = cidr->get_ref<const std::string&>();
      if (auto st = AddPrefix(f, n, c, SourceId(id)); !st.ok()) return st;
    }
    if (f.meta_records && static_cast<uint64_t>(*f.meta_records) != f.entries.size())
      return Error(meta_line, absl::StrCat("metadata says ", *f.meta_records, " records, the file has ",
                                           f.entries.size(), " (truncated or corrupt download?)"));
    return absl::OkStatus();
  }

  absl::Status ReadMeta(const nlohmann::json& j, uint32_t n, Feed& f) {
    auto num = [&](const char* k, std::optional<int64_t>* out) -> absl::Status {
      auto it = j.find(k);
      if (it == j.end()) return absl::OkStatus();
      if (!it->is_number_integer() || it->get<int64_t>() < 0)
        return Error(n, absl::StrCat("metadata \"", k, "\" is not a non-negative integer"));
      *out = it->get<int64_t>();
      return absl::OkStatus();
    };
    auto str = [&](const char* k, std::string* out) -> absl::Status {
      auto it = j.find(k);
      if (it == j.end()) return absl::OkStatus();
      if (!it->is_string()) return Error(n, absl::StrCat("metadata \"", k, "\" is not a string"));
      *out = it->get<std::string>();
      return absl::OkStatus();
    };
    for (absl::Status st : {num("timestamp", &f.meta_timestamp), num("size", &f.meta_size),
                            num("records", &f.meta_records), str("copyright", &f.meta_copyright),
                            str("terms", &f.meta_terms)})
      if (!st.ok()) return st;
    return absl::OkStatus();
  }

 private:
  std::string path_;
  PrefixOptions opts_;
};

bool IsFireholHeaderKey(absl::string_view body) {
  body = Trim(body);
  for (absl::string_view k : {"Maintainer", "Category", "Maintainer URL", "List source URL",
                              "Source File Date", "Entries", "Version"})
    if (absl::StartsWithIgnoreCase(body, k)) {
      absl::string_view rest = Trim(body.substr(k.size()));
      if (!rest.empty() && rest[0] == ':') return true;
    }
  return false;
}

}  // namespace

SourceId::SourceId(absl::string_view s) {
  if (s.empty()) return;
  struct Interned {
    absl::Mutex mu;
    absl::node_hash_set<std::string> set ABSL_GUARDED_BY(mu);  // node: stable addresses
  };
  static Interned* in = new Interned;  // never destroyed: ids outlive every policy
  absl::MutexLock l(&in->mu);
  p_ = &*in->set.emplace(s).first;
}

absl::string_view FeedFormatName(FeedFormat f) {
  switch (f) {
    case FeedFormat::kAuto: return "auto";
    case FeedFormat::kPlain: return "plain";
    case FeedFormat::kSpamhausDrop: return "spamhaus-drop";
    case FeedFormat::kSpamhausDropJson: return "spamhaus-drop-json";
    case FeedFormat::kFirehol: return "firehol";
  }
  return "?";
}

absl::StatusOr<FeedFormat> ParseFeedFormat(absl::string_view name) {
  for (FeedFormat f : {FeedFormat::kAuto, FeedFormat::kPlain, FeedFormat::kSpamhausDrop,
                       FeedFormat::kSpamhausDropJson, FeedFormat::kFirehol})
    if (name == FeedFormatName(f)) return f;
  return absl::InvalidArgumentError(
      absl::StrCat(QuoteForMessage(name),
                   " is not a list format (auto, plain, spamhaus-drop, spamhaus-drop-json, firehol)"));
}

FeedFormat DetectFeedFormat(absl::string_view path, absl::string_view content) {
  size_t slash = path.rfind('/');
  absl::string_view base = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  for (absl::string_view ext : {".json", ".jsonl", ".ndjson"})
    if (absl::EndsWithIgnoreCase(base, ext)) return FeedFormat::kSpamhausDropJson;
  for (absl::string_view ext : {".netset", ".ipset"})
    if (absl::EndsWithIgnoreCase(base, ext)) return FeedFormat::kFirehol;

  Lines lines(content);
  absl::string_view l;
  int records = 0;
  bool firehol = false;
  while (lines.Next(&l) && lines.number() <= 200 && records < 20) {
    absl::string_view t = Trim(l);
    if (t.empty()) continue;
    if (t[0] == '#') {
      if (IsFireholHeaderKey(t.substr(1))) firehol = true;
      continue;
    }
    if (t[0] == ';') return FeedFormat::kSpamhausDrop;
    if (records == 0 && t[0] == '{') return FeedFormat::kSpamhausDropJson;
    size_t hash = t.find('#');
    if (t.substr(0, hash).find(';') != absl::string_view::npos) return FeedFormat::kSpamhausDrop;
    ++records;
  }
  return firehol ? FeedFormat::kFirehol : FeedFormat::kPlain;
}

absl::StatusOr<Feed> ParseFeed(absl::string_view path, absl::string_view content, FeedFormat format,
                               const PrefixOptions& opts) {
  Feed f;
  f.path = std::string(path);
  f.format = format == FeedFormat::kAuto ? DetectFeedFormat(path, content) : format;
  // One entry per line at most; reserving avoids regrowth on million-line feeds.
  f.entries.reserve(static_cast<size_t>(std::count(content.begin(), content.end(), '\n')) + 1);
  Parser p(path, opts);
  absl::Status st;
  switch (f.format) {
    case FeedFormat::kPlain: st = p.ParseHashComments(content, f, false); break;
    case FeedFormat::kFirehol: st = p.ParseHashComments(content, f, true); break;
    case FeedFormat::kSpamhausDrop: st = p.ParseSpamhausDrop(content, f); break;
    case FeedFormat::kSpamhausDropJson: st = p.ParseSpamhausJson(content, f); break;
    case FeedFormat::kAuto: st = absl::InternalError("format detection failed"); break;
  }
  if (!st.ok()) return st;
  // Only when much is wasted (comments, blank lines): the copy costs more than the slack.
  if (f.entries.capacity() - f.entries.size() > f.entries.size() / 4) f.entries.shrink_to_fit();
  return f;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, uint64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused just below); reads of a
  // regular file ignore the flag.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  Fd owner(fd);
  struct stat sb;
  if (::fstat(fd, &sb) != 0)
    return absl::InvalidArgumentError(absl::StrCat(path, ": fstat: ", std::strerror(errno)));
  if (!S_ISREG(sb.st_mode)) {
    const char* what = S_ISDIR(sb.st_mode)    ? "a directory"
                       : S_ISFIFO(sb.st_mode) ? "a FIFO"
                       : S_ISCHR(sb.st_mode)  ? "a character device"
                       : S_ISBLK(sb.st_mode)  ? "a block device"
                       : S_ISSOCK(sb.st_mode) ? "a socket"
                                              : "not a regular file";
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": is ", what, "; policy and list files must be regular files"));
  }
  auto too_big = [&](uint64_t n) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", n, " bytes or more, over the limit ",
                                                   "of ", max_bytes, " (limits.file_bytes)"));
  };
  if (static_cast<uint64_t>(sb.st_size) > max_bytes) return too_big(sb.st_size);
  std::string out;
  if (sb.st_size > 0) out.reserve(static_cast<size_t>(sb.st_size) + (1 << 16));
  // Straight into the string (its size known from fstat, grown if the file grows meanwhile).
  size_t used = 0;
  for (;;) {
    if (out.size() - used < (1 << 16)) out.resize(std::max(out.capacity(), used + (1 << 16)));
    ssize_t n = ::read(fd, out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InvalidArgumentError(absl::StrCat(path, ": read: ", std::strerror(errno)));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
    if (used > max_bytes) return too_big(used);
  }
  out.resize(used);
  return out;
}

absl::StatusOr<Feed> LoadFeed(const std::string& path, FeedFormat format, const PrefixOptions& opts) {
  auto content = ReadWholeFile(path);
  if (!content.ok()) return content.status();
  return ParseFeed(path, *content, format, opts);
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  // A new file of a name nobody can guess, made here (O_EXCL: never one that exists, and never
  // through a symlink planted at the name).
  std::string tmp = absl::StrCat(path, ".tmp.XXXXXX");
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(tmp, "mkostemp", errno);
  Fd owner(fd);
  const char* d = text.data();
  size_t n = text.size();
  while (n > 0) {
    ssize_t w = ::write(fd, d, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::unlink(tmp.c_str());
      return ErrnoStatus(tmp, "write", e);
    }
    d += w;
    n -= static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(tmp, "fsync", e);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(path, "rename", e);
  }
  return absl::OkStatus();
}

namespace {

struct CachedFeed {
  FeedFormat format;
  bool allow_default_route;
  size_t size;
  size_t hash;
  std::shared_ptr<const Feed> feed;
  // The text parsed, kept for big plain lists: the next change is parsed as a diff against it.
  std::shared_ptr<const std::string> content;
  // Big plain lists: the Feed this one replaced, whose entries' storage (mapped already) the next
  // parse of the file writes into; held by nothing else.
  std::shared_ptr<Feed> spare;
};

struct FeedCache {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, CachedFeed> by_path ABSL_GUARDED_BY(mu);
  FeedCacheStats stats ABSL_GUARDED_BY(mu);
};

std::atomic<bool> g_keep_spares{true};

FeedCache& Cache() {
  static FeedCache* c = new FeedCache;  // never destroyed: no exit-time ordering questions
  return *c;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Feed>> LoadFeedCached(const std::string& path,
                                                           FeedFormat format,
                                                           const PrefixOptions& opts,
                                                           uint64_t max_bytes) {
  auto content = ReadWholeFile(path, max_bytes);
  if (!content.ok()) return content.status();
  size_t hash = absl::HashOf(absl::string_view(*content));
  FeedCache& c = Cache();
  std::shared_ptr<const Feed> before;
  std::shared_ptr<const std::string> before_text;
  std::shared_ptr<Feed> spare;
  {
    absl::MutexLock l(&c.mu);
    auto it = c.by_path.find(path);
    if (it != c.by_path.end() && it->second.format == format &&
        it->second.allow_default_route == opts.allow_default_route) {
      if (it->second.size == content->size() && it->second.hash == hash) {
        ++c.stats.hits;
        return it->second.feed;
      }
      before = it->second.feed;
      before_text = it->second.content;
      spare = std::move(it->second.spare);
    }
  }
  FeedFormat detected = format == FeedFormat::kAuto ? DetectFeedFormat(path, *content) : format;
  std::optional<Feed> parsed;
  bool by_diff = false;
  if (before_text && detected == FeedFormat::kPlain && before->format == FeedFormat::kPlain &&
      !HasBom(*content) && !HasBom(*before_text)) {
    Feed f;
    f.path = path;
    f.format = FeedFormat::kPlain;
    if (spare) {
      f.entries = std::move(spare->entries);
      f.entries.clear();
    }
    auto done = Parser(path, opts).ParsePlainDiff(*before_text, *before, *content, f);
    if (!done.ok()) return done.status();
    if (*done) {
      parsed.emplace(std::move(f));
      by_diff = true;
    }
  }
  if (!parsed) {
    auto feed = ParseFeed(path, *content, format, opts);
    if (!feed.ok()) return feed.status();
    parsed.emplace(std::move(*feed));
  }
  // A non-const Feed behind the const view: it may become a spare, written into later.
  std::shared_ptr<const Feed> shared = std::make_shared<Feed>(std::move(*parsed));
  std::shared_ptr<const std::string> text;
  bool big_plain = shared->format == FeedFormat::kPlain && content->size() >= kDiffMinBytes;
  if (big_plain && g_keep_spares.load())
    text = std::make_shared<const std::string>(std::move(*content));
  before_text.reset();
  absl::MutexLock l(&c.mu);
  ++(by_diff ? c.stats.diffs : c.stats.parses);
  CachedFeed& slot = c.by_path[path];
  std::shared_ptr<const Feed> replaced = std::move(slot.feed);
  slot = CachedFeed{format, opts.allow_default_route, text ? text->size() : content->size(), hash,
                    shared, std::move(text), nullptr};
  // The replaced Feed becomes the spare when nothing else holds it (`before` and `replaced` are
  // the same one, or `before` is null). Feeds are made non-const (above), so writing its storage
  // is allowed.
  if (big_plain && replaced && replaced == before && g_keep_spares.load()) {
    before.reset();
    if (replaced.use_count() == 1) slot.spare = std::const_pointer_cast<Feed>(replaced);
  }
  return shared;
}

void PruneFeedCache(const std::vector<std::string>& keep) {
  absl::flat_hash_set<std::string> k(keep.begin(), keep.end());
  FeedCache& c = Cache();
  absl::MutexLock l(&c.mu);
  absl::erase_if(c.by_path, [&](const auto& kv) { return !k.contains(kv.first); });
}

FeedCacheStats GetFeedCacheStats() {
  FeedCache& c = Cache();
  absl::MutexLock l(&c.mu);
  FeedCacheStats s = c.stats;
  for (const auto& [path, cf] : c.by_path)
    if (cf.spare) s.spare_bytes += cf.spare->entries.capacity() * sizeof(FeedEntry);
  return s;
}

void KeepFeedSpares(bool keep) {
  g_keep_spares = keep;
  if (keep) return;
  FeedCache& c = Cache();
  absl::MutexLock l(&c.mu);
  for (auto& [path, cf] : c.by_path) {
    cf.spare.reset();
    cf.content.reset();
  }
}

void PrepareFeedSpares() {
  FeedCache& c = Cache();
  std::vector<std::pair<std::string, size_t>> want;  // path, entries (with room to grow)
  {
    absl::MutexLock l(&c.mu);
    for (const auto& [path, cf] : c.by_path)
      if (!cf.spare && cf.content && cf.feed)
        want.emplace_back(path, WithReloadRoom(cf.feed->entries.size()));
  }
  for (const auto& [path, n] : want) {
    if (!g_keep_spares.load()) return;
    auto spare = std::make_shared<Feed>();
    spare->entries = WrittenStorage<FeedEntry>(n);
    absl::MutexLock l(&c.mu);
    auto it = c.by_path.find(path);
    // Checked under the lock, as KeepFeedSpares(false) clears under it.
    if (it != c.by_path.end() && !it->second.spare && g_keep_spares.load())
      it->second.spare = std::move(spare);
  }
}

}  // namespace bw
