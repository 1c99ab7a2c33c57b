#include "daemon/scan/scan.hpp"

#include "daemon/dataplane/prog_test_run.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
// pcap/bpf.h (classic BPF) and linux/bpf.h both define struct bpf_insn: take libpcap without it.
#define PCAP_DONT_INCLUDE_PCAP_BPF_H
#include <pcap/dlt.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "daemon/cli/capabilities.hpp"
#include "daemon/dataplane/apply.hpp"
#include "daemon/events/eve_writer.hpp"
#include "daemon/events/events.hpp"
#include "daemon/dataplane/libbpf_log.hpp"
#include "daemon/policy/policy_lookup.hpp"
#include "daemon/dataplane/loader.hpp"
#include "daemon/policy/policy.hpp"
#include "daemon/events/signatures.hpp"

#ifndef DLT_LINUX_SLL2
#define DLT_LINUX_SLL2 276
#endif

namespace bw {
namespace {

// ---- frames ---------------------------------------------------------------------------------------

// Longest frame run whole. BPF_PROG_TEST_RUN copies the frame into one page after its headroom
// (XDP 256 bytes, TC 64) and leaves room for skb_shared_info (320 bytes on x86-64); 640 bytes
// covers both programs on every architecture bannerwatch builds on.
size_t MaxRunBytes() {
  long page = sysconf(_SC_PAGESIZE);
  if (page < 4096) page = 4096;
  return static_cast<size_t>(page) - 640;
}

constexpr uint16_t kEthIp = 0x0800, kEthIp6 = 0x86dd, kEthVlan = 0x8100, kEthQinq = 0x88a8;

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
void PutBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

struct Frame {
  std::vector<uint8_t> bytes;  // Ethernet frame as it will run
  bool trimmed = false;
  bool egress = false;
};

// Link-layer header -> Ethernet. Returns false if the record is too short to hold its header.
bool ToEthernet(int linktype, const uint8_t* data, uint32_t caplen, uint32_t wirelen,
                std::vector<uint8_t>* out, uint32_t* eth_wirelen) {
  out->clear();
  if (linktype == DLT_EN10MB) {
    out->assign(data, data + caplen);
    *eth_wirelen = wirelen;
    return true;
  }
  // Linux cooked: an Ethernet header made of zero destination, the link-layer source address when
  // it is a MAC address, and the protocol field (an EtherType: VLAN tags follow it as in Ethernet).
  uint32_t hdr;
  uint16_t proto;
  const uint8_t* addr;
  uint32_t alen;
  if (linktype == DLT_LINUX_SLL) {
    hdr = 16;  // type(2) arphrd(2) alen(2) addr(8) protocol(2)
    if (caplen < hdr) return false;
    alen = Be16(data + 4);
    addr = data + 6;
    proto = Be16(data + 14);
  } else {
    hdr = 20;  // protocol(2) reserved(2) ifindex(4) arphrd(2) type(1) alen(1) addr(8)
    if (caplen < hdr) return false;
    proto = Be16(data);
    alen = data[11];
    addr = data + 12;
  }
  out->resize(14 + caplen - hdr);
  uint8_t* e = out->data();
  std::memset(e, 0, 12);
  if (alen == 6) std::memcpy(e + 6, addr, 6);
  PutBe16(e + 12, proto);
  std::memcpy(e + 14, data + hdr, caplen - hdr);
  *eth_wirelen = wirelen >= hdr ? wirelen - hdr + 14 : static_cast<uint32_t>(out->size());
  return true;
}

bool InLocal(const std::vector<Prefix>& local, Family f, const uint8_t* a) {
  Prefix host = Prefix::Make(f, a, f == Family::kV4 ? 32 : 128);
  for (const Prefix& p : local)
    if (p.contains(host)) return true;
  return false;
}

// Cuts the frame to what test_run takes, trims the IP length field of a frame that lost bytes
// (snaplen, or the cut), and finds the direction from the IP source address.
void Prepare(Frame* f, uint32_t eth_wirelen, size_t max_run, const std::vector<Prefix>& local) {
  std::vector<uint8_t>& b = f->bytes;
  bool cut = b.size() < eth_wirelen;
  if (b.size() > max_run) {
    b.resize(max_run);
    cut = true;
  }
  size_t n = b.size(), off = 12;
  if (n < 14) return;
  uint16_t type = Be16(&b[12]);
  for (int i = 0; i < BW_VLAN_MAX && (type == kEthVlan || type == kEthQinq); ++i) {
    if (n < off + 6) return;
    type = Be16(&b[off + 4]);
    off += 4;
  }
  size_t l3 = off + 2;
  if (type == kEthIp) {
    if (cut && n >= l3 + 4 && l3 + Be16(&b[l3 + 2]) > n) {
      PutBe16(&b[l3 + 2], static_cast<uint16_t>(n - l3));
      f->trimmed = true;
    }
    if (n >= l3 + 16 && (b[l3] >> 4) == 4) f->egress = InLocal(local, Family::kV4, &b[l3 + 12]);
  } else if (type == kEthIp6) {
    if (cut && n >= l3 + 6 && l3 + 40 + Be16(&b[l3 + 4]) > n) {
      PutBe16(&b[l3 + 4], static_cast<uint16_t>(n >= l3 + 40 ? n - l3 - 40 : 0));
      f->trimmed = true;
    }
    if (n >= l3 + 24 && (b[l3] >> 4) == 6) {
      const uint8_t* s = &b[l3 + 8];
      static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      f->egress = std::memcmp(s, kMapped, 12) == 0 ? InLocal(local, Family::kV4, s + 12)
                                                   : InLocal(local, Family::kV6, s);
    }
  }
  if (cut) f->trimmed = true;
  // TC's test_run refuses an IPv4 frame without room for an IPv4 header, and IPv6 likewise
  // (it reads them to set up the skb): pad with zeros, which the program, reading the (trimmed)
  // IP length fields, treats like Ethernet padding.
  if (f->egress) {
    size_t min = Be16(&b[12]) == kEthIp ? 34 : Be16(&b[12]) == kEthIp6 ? 54 : 14;
    if (b.size() < min) b.resize(min, 0);
  }
}

// ---- metadata for the formatter -------------------------------------------------------------------

class ScanLookup : public PolicyEveLookup {
 public:
  explicit ScanLookup(const CompiledPolicy* c) { set_policy(c); }
  void set_pcap_filename(std::string name) { pcap_ = std::move(name); }
  // Offline there is no interface (docs/signatures.md): the capture is named in pcap_filename.
  std::string_view PcapFilename() const override { return pcap_; }

 private:
  std::string pcap_;
};

// ---- captures -------------------------------------------------------------------------------------

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};
using PcapPtr = std::unique_ptr<pcap_t, PcapCloser>;

struct Capture {
  std::string path;
  std::string pcap_filename;  // as given on the command line; "-" is standard input
  PcapPtr pcap;
  int linktype = 0;
};

// libpcap's messages sometimes start with the path already.
absl::Status CaptureError(const std::string& path, std::string why) {
  if (why.rfind(path + ": ", 0) == 0) why = why.substr(path.size() + 2);
  return absl::DataLossError(absl::StrCat(path, ": ", why));
}

absl::StatusOr<Capture> OpenCapture(const std::string& path) {
  char err[PCAP_ERRBUF_SIZE] = {};
  // Nanosecond precision: pcapng and nanosecond pcap keep theirs; microsecond files are scaled.
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (!p) return CaptureError(path == "-" ? "stdin" : path, err);
  Capture c;
  c.path = path;
  c.pcap.reset(p);
  c.pcap_filename = path;
  c.linktype = pcap_datalink(p);
  if (c.linktype != DLT_EN10MB && c.linktype != DLT_LINUX_SLL && c.linktype != DLT_LINUX_SLL2) {
    const char* name = pcap_datalink_val_to_name(c.linktype);
    return CaptureError(path, absl::StrCat("unsupported link type ", name ? name : "?", " (",
                                           c.linktype, "); scan reads EN10MB, LINUX_SLL and LINUX_SLL2"));
  }
  return c;
}

// ---- the pin root ---------------------------------------------------------------------------------

// Pin roots of scans that died without cleaning up (a crash skips it) are removed by the next one.
void RemoveStaleScanPins() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/fs/bpf", ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("bwscan-", 0) != 0) continue;
    int pid = std::atoi(name.c_str() + 7);
    if (pid <= 0 || pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::filesystem::remove_all(e.path(), ec);
  }
}

// Owns the loaded data plane; unpins (and removes the root) however the scan ends.
struct PinnedPlane {
  std::unique_ptr<DataPlane> dp;
  std::string root;
  bool own_root = false;  // the default root: everything under it is ours
  ~PinnedPlane() {
    if (dp) (void)dp->UnpinMaps();  // our map pins, then the root if empty
    dp.reset();
    std::error_code ec;
    if (own_root) std::filesystem::remove_all(root, ec);
  }
};

uint64_t TestRun(int prog_fd, bool xdp, const std::vector<uint8_t>& frame, absl::Status* st) {
  auto r = RunFrame(prog_fd, xdp, frame);
  if (!r.ok()) {
    *st = r.status();
    return 0;
  }
  return *r;
}

}  // namespace

uint64_t ScanReport::alert_count() const {
  uint64_t n = 0;
  for (const auto& [sid, c] : alerts) n += c;
  return n;
}

absl::StatusOr<Prefix> ParseLocalPrefix(absl::string_view text) {
  PrefixOptions o;
  o.allow_default_route = true;
  auto p = ParsePrefix(text, o);
  if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat("--local: ", p.status().message()));
  return p;
}

absl::Status Scan(const ScanOptions& opts, const ScanLineSink& emit, ScanReport* report) {
  *report = ScanReport{};
  if (opts.captures.empty()) return absl::InvalidArgumentError("no capture files given");

  // The policy, as `run` loads it.
  auto pol = LoadPolicyFile(opts.config_path);
  if (!pol.ok()) return pol.status();
  auto compiled = Compile(*pol);
  if (!compiled.ok()) return compiled.status();
  report->block_event_interval = pol->block_event_interval;
  const uint64_t interval_ns =
      static_cast<uint64_t>(absl::ToInt64Nanoseconds(pol->block_event_interval));
  // The kernel's limiter would run on replay time: off; the capture-time one below replaces it.
  compiled->config.block_event_interval_ns = 0;
  // The per-second budget too: a capture replays faster than it was recorded, and the budget is
  // there to protect a live ring buffer, not to thin out an offline report.
  compiled->config.block_event_budget = 0;

  // Every capture opens before anything runs: a typo costs nothing.
  std::vector<Capture> caps;
  for (const std::string& path : opts.captures) {
    auto c = OpenCapture(path);
    if (!c.ok()) return c.status();
    caps.push_back(std::move(*c));
  }
  report->captures = caps.size();

  PinnedPlane plane;
  if (opts.pin_root.empty()) {
    plane.root = absl::StrCat("/sys/fs/bpf/bwscan-", getpid());
    plane.own_root = true;
    RemoveStaleScanPins();
    // Nothing may be adopted: whatever is pinned under our own root is a leftover of ours.
    std::error_code ec;
    std::filesystem::remove_all(plane.root, ec);
  } else {
    // A root given by the caller may hold someone else's pins (a daemon's): never adopt, never
    // remove them; insist on an empty or new directory.
    std::error_code ec;
    if (std::filesystem::exists(opts.pin_root, ec) && !std::filesystem::is_empty(opts.pin_root, ec))
      return absl::FailedPreconditionError(absl::StrCat(
          "pin root ", opts.pin_root, " is not empty: a scan needs a private, empty pin root"));
    plane.root = opts.pin_root;
  }
  LoadOptions lo;
  lo.pin_root = plane.root;
  lo.v4_entries = pol->v4_entries;
  lo.v6_entries = pol->v6_entries;
  lo.variant = opts.variant;
  auto dp = DataPlane::Load(lo);
  if (!dp.ok()) return dp.status();
  plane.dp = std::move(*dp);
  auto maps = plane.dp->Maps();
  if (!maps.ok()) return maps.status();
  auto applied = ApplyPolicy(*compiled, *maps);
  if (!applied.ok()) return applied.status();

  ScanLookup lookup(&*compiled);
  EveFormatter formatter(&lookup);
  formatter.set_options(EveOptionsFor(pol->eve));
  struct Held {
    uint64_t last_ns = 0;
    uint32_t suppressed = 0;
  };
  absl::flat_hash_map<std::string, Held> limiter;  // family, kind, direction, remote -> state
  int64_t frame_ns = 0;

  auto on_event = [&](const bw_event& kev) {
    bw_event ev = kev;
    if (ev.kind == BW_EV_BLOCK || ev.kind == BW_EV_WATCH) {
      const uint8_t* remote = ev.direction == BW_DIR_INGRESS ? ev.saddr : ev.daddr;
      std::string key{static_cast<char>(ev.family), static_cast<char>(ev.kind),
                      static_cast<char>(ev.direction)};
      key.append(reinterpret_cast<const char*>(remote), 16);
      auto [it, fresh] = limiter.try_emplace(key);
      uint64_t now = static_cast<uint64_t>(frame_ns);
      // As the kernel compares: unsigned, so a capture whose clock steps back emits.
      if (!fresh && now - it->second.last_ns < interval_ns) {
        ++it->second.suppressed;
        ++report->events_held;
        return;
      }
      ev.suppressed = fresh ? 0 : it->second.suppressed;
      it->second.last_ns = now;
      it->second.suppressed = 0;
    }
    auto line = formatter.FormatAt(ev, frame_ns);
    if (!line.ok()) {
      ++report->format_errors;
      return;
    }
    const Signature* sig = SignatureForEvent(ev.kind, ev.banner_side);
    if (sig) ++report->alerts[sig->signature_id];
    emit(*line);
  };
  auto reader = EventReader::Create(plane.dp->events_fd(), on_event, &maps->watch_v4);
  if (!reader.ok()) return reader.status();

  const size_t max_run = MaxRunBytes();
  const int xdp_fd = plane.dp->xdp_fd(), tc_fd = plane.dp->tc_fd();
  absl::Status result = absl::OkStatus();
  Frame f;
  for (Capture& c : caps) {
    lookup.set_pcap_filename(c.pcap_filename);
    pcap_pkthdr* h;
    const u_char* data;
    int r;
    while ((r = pcap_next_ex(c.pcap.get(), &h, &data)) == 1) {
      if (opts.stop && opts.stop->load()) break;
      ++report->frames;
      frame_ns = static_cast<int64_t>(h->ts.tv_sec) * 1000000000 + h->ts.tv_usec;  // ns precision
      uint32_t eth_wirelen = 0;
      f.trimmed = f.egress = false;
      if (!ToEthernet(c.linktype, data, h->caplen, h->len, &f.bytes, &eth_wirelen) ||
          f.bytes.size() < 14) {
        ++report->not_run;
        continue;
      }
      Prepare(&f, eth_wirelen, max_run, opts.local);
      if (f.trimmed) ++report->trimmed;
      absl::Status st;
      uint64_t rv = TestRun(f.egress ? tc_fd : xdp_fd, !f.egress, f.bytes, &st);
      if (!st.ok())
        return absl::InternalError(absl::StrCat(c.path, ": frame ", report->frames, ": ", st.message()));
      bool drop = f.egress ? rv == TC_ACT_SHOT : (rv == XDP_DROP || rv == XDP_ABORTED);
      ++(f.egress ? report->egress : report->ingress);
      ++(drop ? report->drop : report->pass);
      auto n = (*reader)->Drain();
      if (!n.ok()) return n.status();
    }
    if (opts.stop && opts.stop->load()) {
      result = absl::CancelledError("interrupted");
      break;
    }
    if (r == PCAP_ERROR) {
      result = CaptureError(c.path, absl::StrCat(pcap_geterr(c.pcap.get()), " (after frame ",
                                                 report->frames, ")"));
      break;
    }
  }
  for (int d = 0; d < BW_DIR__MAX; ++d) {
    auto cnt = maps->ReadCounters(static_cast<bw_direction>(d));
    if (cnt.ok()) report->counters[d] = *cnt;
  }
  return result;
}

std::string FormatScanSummary(const ScanReport& r) {
  std::string s;
  const CounterArray& in = r.counters[BW_DIR_INGRESS];
  const CounterArray& eg = r.counters[BW_DIR_EGRESS];
  absl::StrAppend(&s, "captures: ", r.captures, "\n");
  absl::StrAppend(&s, "frames: ", r.frames, " (ingress ", r.ingress, ", egress ", r.egress,
                  ", not run ", r.not_run, ", trimmed ", r.trimmed, ")\n");
  absl::StrAppend(&s, "verdicts: pass ", r.pass, ", drop ", r.drop, "\n");
  absl::StrAppend(&s, "alerts: ", r.alert_count());
  if (!r.alerts.empty()) {
    s += " (";
    bool first = true;
    for (const auto& [sid, n] : r.alerts) {
      absl::StrAppend(&s, first ? "" : ", ", sid, ": ", n);
      first = false;
    }
    s += ")";
  }
  s += "\n";
  absl::StrAppend(&s, "malformed: ", in[BW_CNT_malformed] + eg[BW_CNT_malformed], " (ingress ",
                  in[BW_CNT_malformed], ", egress ", eg[BW_CNT_malformed], ")\n");
  absl::StrAppend(&s, "block and watch events held back: ", r.events_held,
                  " (block_event_interval ", absl::FormatDuration(r.block_event_interval),
                  " on capture time)\n");
  if (r.format_errors) absl::StrAppend(&s, "format errors: ", r.format_errors, "\n");
  absl::StrAppend(&s, absl::StrFormat("counters: %26s %10s\n", "ingress", "egress"));
  for (int i = 0; i < BW_CNT__MAX; ++i) {
    if (in[i] == 0 && eg[i] == 0) continue;
    absl::StrAppend(&s, absl::StrFormat("  %-24s %10u %10u\n", kCounterNames[i], in[i], eg[i]));
  }
  return s;
}

namespace {
std::atomic<bool> g_stop{false};
}  // namespace

int ScanMain(ScanOptions o, bool verbose) {
  if (absl::Status st = CapabilityCheck("bannerwatch scan"); !st.ok()) {
    std::fprintf(stderr, "bannerwatch: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  InstallLibbpfLog(verbose);

  // Stop cleanly (the pin root is removed) on SIGINT / SIGTERM, and when stdout goes away.
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop.store(true); };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  o.stop = &g_stop;

  static char outbuf[1 << 20];
  std::setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
  bool out_failed = false;
  ScanReport report;
  absl::Status st = Scan(
      o,
      [&](std::string_view line) {
        if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() ||
            std::fputc('\n', stdout) == EOF) {
          out_failed = true;
          g_stop.store(true);
        }
      },
      &report);
  if (std::fflush(stdout) != 0) out_failed = true;
  if (report.captures > 0) std::fputs(FormatScanSummary(report).c_str(), stderr);
  if (out_failed) {
    std::fprintf(stderr, "bannerwatch scan: writing the EVE lines to stdout failed: %s\n",
                 std::strerror(errno));
    return 1;
  }
  if (!st.ok()) {
    std::fprintf(stderr, "bannerwatch scan: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace bw
