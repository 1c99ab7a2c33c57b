// policy.hpp — the YAML policy: strict parsing, list files, and compilation to kernel values.
//
// Contract: LoadPolicyFile/ParsePolicy read the whole policy and every list file it names, or fail:
// an unknown key, a wrong type, a bad enum value, a duplicate key or list name, a bad prefix, an
// unreadable or malformed list file, or more prefixes than limits allow is InvalidArgument
// "FILE:LINE: where: what" (lines 1-based), and nothing of that policy is used (the caller keeps its
// last good one). Nothing here throws: yaml-cpp exceptions are caught inside. List files are read
// every time, but parsed only when their content changed (feeds.hpp, LoadFeedCached).
// Compile() turns a Policy into a CompiledPolicy: list and entry tables (ids from 1, policy order)
// and, for every distinct prefix of the non-expired entries, the kernel value: the effective action
// is the highest precedence (SAFELIST > BLOCK > WATCH) among all entries covering the prefix; the
// value's list_id / entry_ref / prefixlen name the deciding entry (highest precedence, then the most
// specific, then the first in policy order). A sort (a radix sort for IPv4), then one sweep with a
// stack.
// Ids are stable across compiles when the previous CompiledPolicy is passed: a list keeps its id by
// name and an entry its ref by (list, prefix), so a reload rewrites only what changed and events
// emitted under the previous policy still resolve to the right list and entry.
// With `previous` and the same lists (names, order, actions, expired state), the IPv4 sort is
// replaced by a merge of the previous compile's sorted items with the few entries added, moved or
// removed (CompiledPolicy::compile_state); the result is identical to the full compile's.
// policies/README.md documents the schema, the list formats and every error.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/policy/cidr.hpp"
#include "daemon/host/beacon.hpp"
#include "daemon/policy/feeds.hpp"
#include "maps/bannerwatch_abi.h"

namespace bw {

enum class ListAction : uint8_t {
  kWatch = BW_ACTION_WATCH,
  kBlock = BW_ACTION_BLOCK,
  kSafelist = BW_ACTION_SAFELIST,
};
absl::string_view ListActionName(ListAction a);  // "watch", "block", "safelist"
// 1 watch < 2 block < 3 safelist.
int Precedence(ListAction a);
absl::string_view BannerActionName(bw_banner_action a);  // "off", "alert", "drop"

// One prefix of one list, with where it was written.
struct PolicyEntry {
  Prefix prefix;
  uint32_t file = 0;  // index into Policy::files (0: the policy file itself)
  uint32_t line = 0;  // 1-based
  SourceId source_id;  // Spamhaus SBL id, FireHOL category, or empty
};

// A list file named by a list.
struct ListFile {
  std::string path;     // resolved (relative paths are relative to the policy file's directory)
  FeedFormat format = FeedFormat::kAuto;  // as configured; Feed detection result in `detected`
  FeedFormat detected = FeedFormat::kPlain;
  uint32_t policy_line = 0;  // where the policy names it
  size_t entries = 0;
};

struct ListSpec {
  std::string name;
  ListAction action = ListAction::kWatch;
  std::vector<std::string> tags;
  std::string reason;
  std::optional<absl::Time> expires;
  std::vector<ListFile> files;
  std::vector<PolicyEntry> entries;  // inline entries first, then each file's, in order
  uint32_t line = 0;                 // line of the list in the policy
  // `source: crowdsec`: the list also takes the CrowdSec decisions of these types (lower case;
  // default ban), added at every reload from what the daemon last received (Reloader).
  bool crowdsec = false;
  std::vector<std::string> crowdsec_types;
};

// policy `crowdsec:`: a CrowdSec Local API polled as a bouncer; its decisions feed the lists with
// `source: crowdsec` (daemon/service/crowdsec_poller.hpp).
struct CrowdsecSettings {
  std::string url;       // "http://127.0.0.1:8080/" (a trailing '/' added); empty: no section
  std::string key_file;  // resolved
  std::string key;       // the bouncer key read from key_file: never logged or shown
  absl::Duration poll = absl::Seconds(10);
  absl::Duration timeout = absl::Seconds(30);  // one request, connection included
  absl::Duration resync = absl::Minutes(10);   // the whole set asked again this often
  bool scope_ip = true, scope_range = true;
  uint32_t line = 0;  // where the section starts

  bool on() const { return !url.empty(); }
  // The same API, key and polling (the line does not matter): a reload keeps the poller's set.
  bool SameSource(const CrowdsecSettings& o) const {
    return url == o.url && key == o.key && poll == o.poll && timeout == o.timeout &&
           resync == o.resync &&
           scope_ip == o.scope_ip && scope_range == o.scope_range;
  }
};

// policy `eve:` (policies/README.md).
struct EveSettings {
  std::string host;  // "host"; empty = the machine's host name when the records are written
  uint16_t community_id_seed = 0;
  bool suricata7 = false;  // schema: suricata-7 (true) or bannerwatch (false, the default)
};

// EVE to the local syslog socket (`output.syslog`): RFC 5424, one message per line
// (daemon/events/syslog_sink.hpp).
struct EveSyslog {
  bool on = false;
  std::string socket = "/dev/log";
  int facility = 21;  // local5
  int severity = 6;   // info
};

// policy `host:` (policies/README.md): the host-context programs (daemon/host/host_programs.hpp).
struct HostSettings {
  bool attribution = true;  // name the process behind each TCP connection's events
  // connect()/sendmsg() to blocked remotes fail with EPERM; false: TC egress drops them (as before)
  bool refuse = true;
  std::string cgroup;  // the cgroup v2 directory the refusal programs attach to; "" = the root
  uint32_t event_budget = BW_SOCK_EVENT_BUDGET_DEFAULT;  // refusal events per second per CPU
};

// policy `beacon:` (docs/signatures.md, 1000152): periodic connections to one remote.
struct BeaconSettings {
  bool on = true;
  // Which connection starts are scored: false = outbound connections to watched addresses (watch
  // hits), true = every outbound TCP connection (a record per connect from the kernel).
  bool all_connections = false;
  BeaconOptions options;
};

struct Policy {
  std::string path;                // the policy file as given
  std::vector<std::string> files;  // [0] = path, then every list file (PolicyEntry::file)
  // A file of `files` whose entries' PolicyEntry::line is the entry's number in the file, not a
  // line (the daemon's JSON state file): cited "FILE entry N". 0: none.
  uint32_t numbered_file = 0;
  // The "file" of the CrowdSec decisions (its name is the API's URL; PolicyEntry::line is the
  // decision's id): cited "crowdsec decision N (URL)". 0: none.
  uint32_t decisions_file = 0;

  std::vector<uint16_t> ports = {443};
  // HTTP proxy ports: a CONNECT to a watched port through them is followed to the far server's
  // banner (sid 1000146 with match connect_tunnel).
  std::vector<uint16_t> proxy_ports = {3128, 8080, 8888};
  bw_banner_action banner_server = BW_BANNER_ALERT;  // sid 1000146: "SSH-" from a watched port
  bw_banner_action banner_client = BW_BANNER_ALERT;  // sid 1000147: "SSH-" to a watched port
  bool non_tls = false;  // sid 1000150: a server's first payload neither TLS nor HTTP
  // Frames with more VLAN tags or IPv6 extension headers than the programs walk (their transport
  // header unread): counted (pass), also reported where the addresses are known (alert, sid
  // 1000151), or dropped. Blocked and safelisted sources are decided first where readable.
  bw_unparsed_action unparsed = BW_UNPARSED_ALERT;
  bool allow_default_route = false;
  bool keep_on_exit = false;  // leave programs attached and maps pinned when the daemon exits
  // Keep the tables of the policy a reload replaced for the next reload to write into, and a big
  // list's text to parse its next change as a diff: reloads of a million-prefix policy about 40 %
  // faster, for about 210 MiB more held between reloads. Off by default: a host agent's memory
  // matters more than tens of milliseconds on a reload that never lapses enforcement.
  bool keep_reload_buffers = false;
  uint32_t v4_entries = BW_V4_ENTRIES_DEFAULT;  // limits: at most this many IPv4 prefixes
  uint32_t v6_entries = BW_V6_ENTRIES_DEFAULT;
  uint64_t file_bytes = kFileBytesDefault;  // limits: the largest policy or list file read
  absl::Duration block_event_interval = absl::Seconds(1);
  // At most this many block events per second on each CPU; 0: no budget.
  uint32_t block_event_budget = BW_BLOCK_EVENT_BUDGET_DEFAULT;

  // EVE records (`eve:`): the sensor name ("host"; empty = this machine's host name), the
  // Community ID seed, and the schema they follow (docs/signatures.md).
  EveSettings eve;

  // Daemon settings (all optional). Empty string = off.
  std::vector<std::string> interfaces;  // attach to these; empty: as the command line says
  std::string eve_path = "/var/log/bannerwatch/eve.json";
  bool eve_stdout = false;
  EveSyslog eve_syslog;
  CrowdsecSettings crowdsec;
  HostSettings host;  // `host:` (attribution, cgroup: read at start; refuse, event_budget: any time)
  BeaconSettings beacon;
  std::string control_socket = "/run/bannerwatch/control.sock";
  // The control socket's group: empty = the socket is mode 0600 (the daemon's user only); a group
  // name = it belongs to that group, mode 0660, whose members may use the read-only commands.
  std::string control_group;
  // Members of this group may also use the commands that change the daemon's state (block, watch,
  // allow, unlist, reload); empty = uid 0 only. Both read at start (a reload does not change them).
  std::string control_admin_group;
  std::string metrics_listen = "127.0.0.1:9464";  // "[::1]:9464" too; empty = off
  std::string state_file = "/var/lib/bannerwatch/state.json";
  std::string pin_root = BW_PIN_ROOT_DEFAULT;

  std::vector<ListSpec> lists;

  size_t entry_count() const;
};

// Reads `path` and every list file it names. `reuse`: a policy no longer needed, whose big entry
// tables' storage (pages mapped already) the lists are written into; empty afterwards.
absl::StatusOr<Policy> LoadPolicyFile(const std::string& path, Policy* reuse = nullptr);
// Parses policy text as if read from `path` (messages name it; list files resolve against its
// directory).
absl::StatusOr<Policy> ParsePolicy(absl::string_view yaml, const std::string& path,
                                   Policy* reuse = nullptr);

// ---- compiled form ------------------------------------------------------------------------------

struct CompiledList {
  uint32_t id = 0;  // list_id in kernel values: from 1 in policy order, or kept from `previous`
  std::string name;
  ListAction action = ListAction::kWatch;
  std::vector<std::string> tags;
  std::string reason;
  std::optional<absl::Time> expires;
  bool expired = false;  // at compile time: its entries are not in the kernel tables
  size_t entries = 0;
};

struct CompiledEntry {
  uint32_t ref = 0;  // entry_ref in kernel values: from 1 in policy order, or kept from `previous`
  Prefix prefix;
  uint32_t list_id = 0;
  uint32_t file = 0;  // index into CompiledPolicy::files
  uint32_t line = 0;
  SourceId source_id;
};

// The decision a kernel trie stores for a prefix: bw_list_value without its packet counters (a
// compiled table of a million prefixes is read and written whole several times per reload: 32
// bytes an entry instead of 56).
struct KernelValue {
  uint32_t list_id = 0;
  uint32_t entry_ref = 0;
  uint8_t action = 0;
  uint8_t prefixlen = 0;

  friend bool operator==(const KernelValue&, const KernelValue&) = default;
  // The map's value, hits and drops zero.
  bw_list_value ToMap() const {
    bw_list_value v{};
    v.list_id = list_id;
    v.entry_ref = entry_ref;
    v.action = action;
    v.prefixlen = prefixlen;
    return v;
  }
  static KernelValue Of(const bw_list_value& v) {
    return KernelValue{v.list_id, v.entry_ref, v.action, v.prefixlen};
  }
};

// One key/value of a kernel trie.
struct KernelEntry {
  Prefix prefix;
  KernelValue value;
};

struct Explanation {
  struct Cover {
    uint32_t entry_ref = 0;
    bool expired = false;  // its list had expired at compile time
  };
  Prefix query;
  std::vector<Cover> covering;       // every entry covering `query`: most specific first, then policy order
  std::optional<KernelEntry> match;  // what a kernel lookup of `query` finds (longest prefix)
  uint32_t deciding_entry = 0;       // match->value.entry_ref, 0 when unlisted
};

// What an incremental Compile reuses from this compile (opaque; defined in policy.cpp).
struct CompileState;

struct CompiledPolicy {
  std::string policy_path;
  EveSettings eve;  // Policy::eve
  BeaconSettings beacon;  // Policy::beacon
  absl::Time compiled_at = absl::InfinitePast();
  std::vector<std::string> files;
  uint32_t numbered_file = 0;  // Policy::numbered_file
  uint32_t decisions_file = 0;  // Policy::decisions_file
  std::vector<CompiledList> lists;      // policy order; list(id) finds one by id
  std::vector<CompiledEntry> entries;   // policy order; entry(ref) finds one by ref
  std::vector<KernelEntry> v4, v6;      // sorted by prefix; the tries' exact desired contents
  std::vector<uint16_t> ports;          // sorted, unique
  std::vector<uint16_t> proxy_ports;    // sorted, unique
  bw_config config{};
  std::optional<absl::Time> next_expiry;  // earliest list expiry after compiled_at: recompile then
  uint32_t max_list_id = 0, max_entry_ref = 0;  // the highest ids handed out (new ids go above)

  const CompiledList* list(uint32_t id) const;
  const CompiledEntry* entry(uint32_t ref) const;
  // "file:line" ("file entry N" in numbered_file, "crowdsec decision N (URL)" in decisions_file)
  std::string EntryLocation(uint32_t ref) const;
  // The longest-prefix match a kernel lookup of `query` would return (for an address: the /32 or
  // /128 key), or nullptr.
  const KernelEntry* Lookup(const Prefix& query) const;
  // Every entry covering `query` and which one decides: `bannerwatch query IP`.
  Explanation Explain(const Prefix& query) const;
  // Human-readable Explain(): one line per covering entry, the deciding one marked.
  std::string ExplainText(const Prefix& query) const;

  // ref -> index into entries; empty when refs are 1..n in order (no `previous` was given) or when
  // entry_slot holds them.
  absl::flat_hash_map<uint32_t, uint32_t> entry_index;
  // ref -> index + 1 (0: no such entry), used instead of entry_index while refs stay dense enough.
  std::vector<uint32_t> entry_slot;

  // The sorted IPv4 sweep items of this compile, for the next Compile with this as `previous`.
  // Immutable and shared by copies; no part of the policy's meaning.
  std::shared_ptr<const CompileState> compile_state;
};

// `previous`: the policy compiled before (whatever its source), to keep ids stable; or nullptr.
// `reuse`: a compiled policy no longer needed (not `previous`), whose big tables' storage this
// compile takes over, empty afterwards. Their pages are mapped already: at a million prefixes,
// writing the tables into fresh memory costs about 15 ms more in page faults (the daemon keeps the
// policy a reload replaced for the next one).
absl::StatusOr<CompiledPolicy> Compile(const Policy& policy, absl::Time now = absl::Now(),
                                       const CompiledPolicy* previous = nullptr,
                                       CompiledPolicy* reuse = nullptr);

// Storage for the first reload's big tables, made ahead of time. A reload writes its tables into
// the storage of the policy it replaces (keep_reload_buffers); a daemon that has not reloaded yet
// has none, and its first reload would pay a page fault per 4 KiB of fresh memory (about 30 ms of
// a million-prefix reload). These are made with their pages written, for that first reload.
struct ReloadBufferSizes {
  std::vector<size_t> list_entries;  // per list big enough for LoadPolicyFile to reuse its table
  size_t entries = 0, v4 = 0, entry_slot = 0, items4 = 0;  // CompiledPolicy's tables
};
// The sizes of `policy`'s and `compiled`'s big tables, with room for growth (cheap: no copies).
ReloadBufferSizes ReloadBufferSizesOf(const Policy& policy, const CompiledPolicy& compiled);
struct ReloadBuffers {
  Policy policy;                             // for LoadPolicyFile(path, &policy)
  std::unique_ptr<CompiledPolicy> compiled;  // for Compile(..., compiled.get())
};
// Makes them (on any thread: a few tens of milliseconds at a million prefixes).
ReloadBuffers MakeReloadBuffers(const ReloadBufferSizes& sizes);
// The storage (capacity, not size) of the big tables a reload reuses: a policy's list entries, a
// compiled policy's entry, IPv4 and ref tables and its sorted IPv4 items.
size_t ReusableBytes(const Policy& policy);
size_t ReusableBytes(const CompiledPolicy& compiled);

// For tests: how many Compile calls built the IPv4 items by the incremental merge (process-wide),
// and a switch to force the full path (on by default).
uint64_t IncrementalCompileCount();
void SetIncrementalCompile(bool enabled);

}  // namespace bw
