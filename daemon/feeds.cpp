// feeds.cpp — list file parsers (see feeds.hpp for the contract).
#include "daemon/feeds.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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
    if (rest_.size() >= 3 && std::memcmp(rest_.data(), kUtf8Bom, 3) == 0) rest_.remove_prefix(3);
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
    if (content.size() >= 3 && std::memcmp(content.data(), kUtf8Bom, 3) == 0) content.remove_prefix(3);
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

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  std::string out;
  struct stat sb;
  if (::fstat(fd, &sb) == 0) {
    if (S_ISDIR(sb.st_mode)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory"));
    }
    if (sb.st_size > 0) out.reserve(static_cast<size_t>(sb.st_size) + (1 << 16));
  }
  // Straight into the string (its size known from fstat, grown if the file grows meanwhile).
  size_t used = 0;
  for (;;) {
    if (out.size() - used < (1 << 16)) out.resize(std::max(out.capacity(), used + (1 << 16)));
    ssize_t n = ::read(fd, out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": read: ", std::strerror(err)));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  out.resize(used);
  ::close(fd);
  return out;
}

absl::StatusOr<Feed> LoadFeed(const std::string& path, FeedFormat format, const PrefixOptions& opts) {
  auto content = ReadWholeFile(path);
  if (!content.ok()) return content.status();
  return ParseFeed(path, *content, format, opts);
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(tmp, "open", errno);
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
};

struct FeedCache {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, CachedFeed> by_path ABSL_GUARDED_BY(mu);
  FeedCacheStats stats ABSL_GUARDED_BY(mu);
};

FeedCache& Cache() {
  static FeedCache* c = new FeedCache;  // never destroyed: no exit-time ordering questions
  return *c;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Feed>> LoadFeedCached(const std::string& path,
                                                           FeedFormat format,
                                                           const PrefixOptions& opts) {
  auto content = ReadWholeFile(path);
  if (!content.ok()) return content.status();
  size_t hash = absl::HashOf(absl::string_view(*content));
  FeedCache& c = Cache();
  {
    absl::MutexLock l(&c.mu);
    auto it = c.by_path.find(path);
    if (it != c.by_path.end() && it->second.format == format &&
        it->second.allow_default_route == opts.allow_default_route &&
        it->second.size == content->size() && it->second.hash == hash) {
      ++c.stats.hits;
      return it->second.feed;
    }
  }
  auto feed = ParseFeed(path, *content, format, opts);
  if (!feed.ok()) return feed.status();
  auto shared = std::make_shared<const Feed>(std::move(*feed));
  absl::MutexLock l(&c.mu);
  ++c.stats.parses;
  c.by_path[path] = CachedFeed{format, opts.allow_default_route, content->size(), hash, shared};
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
  return c.stats;
}

}  // namespace bw
