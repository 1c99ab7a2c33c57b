// feeds.hpp — list files: plain, Spamhaus DROP (text and JSON lines), FireHOL .netset/.ipset.
//
// Contract: a feed is read whole and parsed into entries (prefix, line, source id) with the strict
// prefix parser (cidr.hpp). The format is given, or detected from the file's extension and then its
// content. Every error is InvalidArgument "FILE:LINE: what is wrong" (or "FILE: ..." for whole-file
// problems such as an unreadable file) and rejects the whole file: a feed is never half-loaded.
// Source ids: the Spamhaus SBL id of each record; the FireHOL "# Category" header for every entry of
// the file; empty for plain lists.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/policy/cidr.hpp"

namespace bw {

// What a policy or list file may weigh by default (limits.file_bytes).
inline constexpr uint64_t kFileBytesDefault = uint64_t{256} << 20;


enum class FeedFormat {
  kAuto,              // by extension, then by content
  kPlain,             // one address or CIDR per line; '#' comments (whole-line or trailing)
  kSpamhausDrop,      // "1.10.16.0/20 ; SBL256894"; ';' comment lines
  kSpamhausDropJson,  // {"cidr":...,"sblid":...,"rir":...} per line, plus a {"type":"metadata",...}
  kFirehol,           // FireHOL .netset/.ipset: '#' header ("# Category : reputation"), one per line
};

// "auto", "plain", "spamhaus-drop", "spamhaus-drop-json", "firehol".
absl::string_view FeedFormatName(FeedFormat f);
absl::StatusOr<FeedFormat> ParseFeedFormat(absl::string_view name);

// An entry's source id (Spamhaus SBL id, FireHOL category, a runtime reason), or empty: a pointer
// to an interned string, so the million entries of a big list carry 8 bytes each and are copied
// without allocating. Interned strings live as long as the process (the distinct ids a daemon sees
// number in the thousands). Thread-safe.
class SourceId {
 public:
  SourceId() = default;
  SourceId(absl::string_view s);  // NOLINT: interns; "" is the empty id
  SourceId(const char* s) : SourceId(absl::string_view(s)) {}         // NOLINT
  SourceId(const std::string& s) : SourceId(absl::string_view(s)) {}  // NOLINT
  bool empty() const { return p_ == nullptr; }
  size_t size() const { return p_ ? p_->size() : 0; }
  absl::string_view view() const { return p_ ? absl::string_view(*p_) : absl::string_view(); }
  operator absl::string_view() const { return view(); }  // NOLINT
  explicit operator std::string_view() const { return {view().data(), view().size()}; }
  std::string str() const { return std::string(view()); }
  friend bool operator==(const SourceId& a, const SourceId& b) { return a.p_ == b.p_; }
  friend bool operator==(const SourceId& a, const char* b) { return a.view() == b; }
  friend bool operator==(const SourceId& a, const std::string& b) { return a.view() == b; }

 private:
  const std::string* p_ = nullptr;
};

struct FeedEntry {
  Prefix prefix;
  uint32_t line = 0;   // 1-based line in the file
  SourceId source_id;  // SBL id, FireHOL category, or empty
};

struct Feed {
  std::string path;  // as given; messages name it
  FeedFormat format = FeedFormat::kPlain;
  std::vector<FeedEntry> entries;
  // FireHOL header fields ("# Key : value" lines before the first entry), in file order.
  std::vector<std::pair<std::string, std::string>> header;
  std::string category;  // FireHOL "Category", the entries' source id
  // Spamhaus JSON metadata record, when present.
  std::optional<int64_t> meta_timestamp, meta_size, meta_records;
  std::string meta_copyright, meta_terms;
};

// The format a file would be parsed as under kAuto: ".json"/".jsonl"/".ndjson" -> Spamhaus JSON,
// ".netset"/".ipset" -> FireHOL; otherwise the content decides (first record '{' -> JSON; ';'
// comment lines or "CIDR ; ID" records -> Spamhaus DROP; a FireHOL header key such as
// "# Maintainer" or "# Category" -> FireHOL; else plain).
FeedFormat DetectFeedFormat(absl::string_view path, absl::string_view content);

// Parses `content` as the file `path` (used in messages and for detection).
absl::StatusOr<Feed> ParseFeed(absl::string_view path, absl::string_view content,
                               FeedFormat format = FeedFormat::kAuto,
                               const PrefixOptions& opts = {});

// Reads and parses a file.
absl::StatusOr<Feed> LoadFeed(const std::string& path, FeedFormat format = FeedFormat::kAuto,
                              const PrefixOptions& opts = {});

// LoadFeed with a process-wide cache of the last parse of each (path, format, options): when the
// file's content is the content parsed last time (same size and 64-bit content hash; the file is
// read and hashed every time, so a rewrite within the same second, of the same size, is noticed),
// the earlier Feed is returned without parsing. A plain list of 1 MiB or more also keeps its text:
// when it changes, only the lines that differ are parsed (lines equal in both versions, matched in
// order, keep their entries with their new line numbers); the result and any error are a full
// parse's. Errors are not cached. Thread-safe.
absl::StatusOr<std::shared_ptr<const Feed>> LoadFeedCached(const std::string& path,
                                                           FeedFormat format = FeedFormat::kAuto,
                                                           const PrefixOptions& opts = {},
                                                           uint64_t max_bytes = kFileBytesDefault);
// Drops every cached feed whose path is not in `keep` (LoadPolicyFile keeps the ones its policy
// names, so the cache holds one policy's feeds); an empty `keep` empties the cache.
void PruneFeedCache(const std::vector<std::string>& keep);
// Full parses, diff parses and cache hits since the process started (for tests and figures).
struct FeedCacheStats {
  uint64_t parses = 0, hits = 0;
  uint64_t diffs = 0;        // changed big plain lists parsed as a diff against their last text
  uint64_t spare_bytes = 0;  // now: entry storage kept from replaced feeds for the next parse
};
FeedCacheStats GetFeedCacheStats();
// Whether the cache keeps, for big plain lists, the replaced Feed (for the next parse of the file
// to write its entries into) and the text parsed (to parse the next change as a diff). Default
// true; false also drops the ones kept, and changed files are then parsed whole (policy key
// keep_reload_buffers).
void KeepFeedSpares(bool keep);
// Storage made ahead for a reload's tables (here and in policy.hpp's ReloadBuffers): room for the
// next version's growth, an eighth more (a table that overflows is copied into fresh memory, the
// cost these buffers are there to avoid), and a vector of that room whose pages are written (then
// emptied: the storage stays).
inline size_t WithReloadRoom(size_t n) { return n + n / 8; }
template <typename T>
std::vector<T> WrittenStorage(size_t n) {
  std::vector<T> v;
  if (n == 0) return v;
  v.resize(n);
  v.clear();
  return v;
}

// Makes a spare, its pages written, for every big plain list in the cache that has none: what the
// first change of each would otherwise write into fresh memory (ReloadBuffers' part in the feed
// cache). A no-op while spares are not kept. Thread-safe; the cache is locked only briefly.
void PrepareFeedSpares();

// Reads a whole regular file of at most max_bytes. Anything else (a FIFO, a device such as
// /dev/zero, a directory) is refused without reading it: opening does not wait for a FIFO's
// writer, and a file that grows past max_bytes while read is refused too. Errors name the path.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          uint64_t max_bytes = kFileBytesDefault);
// Replaces `path` with `text` at once: a temporary file beside it (mode 0600), written and fsynced,
// renamed over it; removed again on error. Errors name the path and strerror.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text);

}  // namespace bw
