// The live daemon against its file system: a full disk under the EVE file and under the state
// file, list files that are symlinks (to a regular file, a FIFO, a device, nothing) or grow past
// the size cap, and kill -9 in the middle of reloading a large list. Through all of it a prober in
// the server namespace floods the host from a blocked address, and not one of its packets may
// arrive: enforcement must never lapse, whatever the daemon's files do.
#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon/dataplane/prog_test_run.hpp"
#include "lib/netns.hpp"
#include "lib/packet.hpp"
#include "lib/probe.hpp"
#include "lib/topology.hpp"

namespace bw::test {
namespace {

using json = nlohmann::json;

// A tmpfs of `size` at `path` for one test. Declared after the Topology and before the Daemon, so
// it is unmounted after the daemon (which holds files on it) stopped, and before the test's
// directory is removed; lazily if something still holds it, so no run leaves a mount behind.
class Tmpfs {
 public:
  Tmpfs(const std::string& path, const std::string& size) : path_(path) {
    std::filesystem::create_directories(path);
    REQUIRE(Sh("mount -t tmpfs -o size=" + size + ",mode=0700 bwt-tmpfs " + path) == 0);
  }
  ~Tmpfs() {
    if (Sh("umount " + path_ + " 2>/dev/null") != 0) Sh("umount -l " + path_);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

 private:
  std::string path_;
};

// Writes zeros to `path` until the file system is full; returns the bytes it took.
uint64_t FillDisk(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  static const char zeros[4096] = {};
  uint64_t n = 0;
  for (;;) {
    ssize_t w = ::write(fd, zeros, sizeof(zeros));
    if (w <= 0) break;
    n += static_cast<uint64_t>(w);
  }
  ::close(fd);
  return n;
}

uint64_t FreeBytes(const std::string& dir) {
  struct statvfs v {};
  REQUIRE(statvfs(dir.c_str(), &v) == 0);
  return static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
}

// Every committed event record (both directions), as the kernel counted them.
uint64_t EventsCommitted(const json& s) {
  return s["counters"]["ingress"]["events"].get<uint64_t>() +
         s["counters"]["egress"]["events"].get<uint64_t>();
}

// The daemon's word on one address (`bannerwatch query`): its "effective action: ..." line.
std::string EffectiveAction(Daemon& d, const std::string& ip) {
  std::string out;
  d.Cli("query " + ip, &out);
  auto at = out.find("effective action: ");
  return at == std::string::npos ? out : out.substr(at + 18, out.find('\n', at) - at - 18);
}

// Issue 13 row 7, live: a write to the EVE file that stops part of the way (a full disk) once left
// a torn line that broke every JSON reader after it. The sink takes the cut line off again; this
// proves it on a real full tmpfs, with the daemon's counts checked against the file line by line.
TEST_CASE("EVE file on a full disk: whole lines only, counts exact, lines again once there is room", "[adversarial]") {
  Topology t;
  const std::string fs = t.dir() + "/evefs";
  Tmpfs tmpfs(fs, "64k");
  // The daemon's file gets what the filler leaves; deleting the filler later makes room again.
  WriteFile(fs + "/filler", std::string(24 * 1024, 'x'));
  const std::string eve = fs + "/eve.json";
  Daemon d(t, kBlockServerPolicy, {"--eve", eve});
  UdpReceiver rx(t.host(), kHostV4, 9999);
  // Control: with no daemon, the flood arrives (so the count below can fail).
  {
    UdpFlood flood(t.server(), kHostV4, 9999, t.dir() + "/sent0");
    Settle(300);
    REQUIRE(flood.Stop() > 100u);
    REQUIRE(rx.Drain() > kGetsThrough);
  }
  d.Start();
  rx.Drain();
  UdpFlood prober(t.server(), kHostV4, 9999, t.dir() + "/sent1");

  // Lines that do not parse are counted, not thrown: a torn line must fail the check below.
  auto banners_to = [&](int port) {
    size_t n = 0;
    std::istringstream ss(ReadFile(eve));
    for (std::string line; std::getline(ss, line);) {
      json j = json::parse(line, nullptr, false);
      n += !j.is_discarded() && j["alert"]["signature_id"] == 1000146 && j["dest_port"] == port;
    }
    return n;
  };
  // Everything the kernel committed is either a line or counted as lost (the pipeline is idle).
  json s;
  auto accounted = [&] {
    s = d.Status();
    return EventsCommitted(s) == s["eve"]["lines_written"].get<uint64_t>() +
                                     s["eve"]["lines_dropped"].get<uint64_t>() +
                                     s["eve"]["format_errors"].get<uint64_t>();
  };

  // Room for these.
  ProduceBannerEvents(d, 10, 41001);
  REQUIRE(WaitFor([&] { return banners_to(41001) == 10u; }, 5000));
  // Far more than the ~40 KiB left holds (a line is about 700 bytes).
  ProduceBannerEvents(d, 400, 41002);
  CHECK(WaitFor([&] { return accounted() && s["eve"]["lines_dropped"].get<uint64_t>() > 0; }, 5000));
  INFO(s["eve"].dump());
  const uint64_t written_full = banners_to(41002);
  CHECK(written_full > 0u);
  CHECK(written_full < 400u);
  CHECK(FreeBytes(fs) < 4096u);  // full indeed
  CHECK(d.Status()["ok"] == true);  // serving meanwhile

  // Room again: new lines are written whole.
  std::filesystem::remove(fs + "/filler");
  ProduceBannerEvents(d, 10, 41003);
  CHECK(WaitFor([&] { return banners_to(41003) == 10u; }, 5000));

  const uint64_t sent = prober.Stop();
  REQUIRE(WaitFor(accounted, 5000));
  const std::string text = ReadFile(eve);
  uint64_t lines = 0, bad = 0;
  std::istringstream ss(text);
  for (std::string line; std::getline(ss, line);) {
    ++lines;
    bad += json::parse(line, nullptr, false).is_discarded();
  }
  INFO(s.dump());
  INFO("sent " << sent << ", lines " << lines << ", file " << text.size() << " bytes");
  CHECK(!text.empty());
  CHECK(text.back() == '\n');
  CHECK(bad == 0u);
  CHECK(lines == s["eve"]["lines_written"].get<uint64_t>());
  // Lost: the 400 that did not fit, less those that did, and any block events of the prober's
  // written meanwhile (one a second at most).
  CHECK(s["eve"]["lines_dropped"].get<uint64_t>() >= 400u - written_full);
  CHECK(s["counters"]["ingress"]["events_lost"] == 0);
  CHECK(s["eve"]["format_errors"] == 0);
  CHECK(sent > 1000u);
  CHECK(rx.Drain() == 0);  // the block held throughout
  CHECK(d.Stop() == 0);
}

// A runtime `block` on a full disk was applied to the kernel and then not saved: the client said
// "warning: not persisted" with exit status 0, and the next start forgot the block; an `unlist`
// likewise removed a block from the kernel that the state file kept. A change is now saved first
// and applied only once saved, so a request that cannot be persisted changes nothing.
TEST_CASE("state file on a full disk: block and unlist are refused with the reason and change nothing", "[adversarial]") {
  Topology t;
  const std::string fs = t.dir() + "/statefs";
  Tmpfs tmpfs(fs, "64k");
  const std::string state = fs + "/state.json";
  // A second address for the prober, so that the server's own one can be the address blocked.
  const char* kProber = "198.51.100.3";
  REQUIRE(t.server().Run(std::string("ip addr add ") + kProber + "/24 dev " + kServerIf) == 0);
  Daemon d(t, kEmptyPolicy, {"--state", state});
  UdpReceiver rx_prober(t.host(), kHostV4, 9999), rx_server(t.host(), kHostV4, 9998);
  auto server_gets_through = [&] {
    rx_server.Drain();
    UdpFlood flood(t.server(), kHostV4, 9998, t.dir() + "/sent-server");
    Settle(300);
    REQUIRE(flood.Stop() > 100u);
    return rx_server.Drain();
  };
  d.Start();
  // Control: nothing blocked, both arrive.
  {
    UdpFlood flood(t.server(), kHostV4, 9999, t.dir() + "/sent0", kProber);
    Settle(300);
    REQUIRE(flood.Stop() > 100u);
    REQUIRE(rx_prober.Drain() > kGetsThrough);
  }
  REQUIRE(server_gets_through() > kGetsThrough);

  std::string out;
  REQUIRE(d.Cli(std::string("block ") + kProber + " --reason prober", &out) == 0);
  rx_prober.Drain();
  UdpFlood prober(t.server(), kHostV4, 9999, t.dir() + "/sent1", kProber);
  const std::string before = ReadFile(state);
  REQUIRE(before.find(std::string(kProber) + "/32") != std::string::npos);

  REQUIRE(FillDisk(fs + "/filler") > 0u);
  CHECK(d.Cli("block 198.51.100.2 --reason server", &out) == 1);
  INFO(out);
  CHECK(out.find(state) != std::string::npos);
  CHECK(out.find("No space left on device") != std::string::npos);
  CHECK(ReadFile(state) == before);
  CHECK(server_gets_through() > kGetsThrough);  // not blocked in the kernel
  CHECK(EffectiveAction(d, "198.51.100.2") == "none");
  // Removing the prober's block cannot be saved either: it stays, in the file and the kernel.
  CHECK(d.Cli(std::string("unlist ") + kProber, &out) == 1);
  CHECK(out.find(state) != std::string::npos);
  CHECK(ReadFile(state) == before);
  CHECK(EffectiveAction(d, kProber) == "block");
  REQUIRE(d.Cli("list --json", &out) == 0);
  CHECK(json::parse(out)["entries"].size() == 1u);
  CHECK(d.Status()["ok"] == true);
  // No leftover temporary file on the full disk.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(fs)) files += e.is_regular_file();
  CHECK(files == 3u);  // state.json, its lock, the filler

  // Room again: the same request works.
  std::filesystem::remove(fs + "/filler");
  REQUIRE(d.Cli("block 198.51.100.2 --reason server", &out) == 0);
  CHECK(out.find("warning") == std::string::npos);
  CHECK(server_gets_through() == 0);
  CHECK(ReadFile(state).find("198.51.100.2/32") != std::string::npos);

  const uint64_t sent = prober.Stop();
  CHECK(sent > 1000u);
  CHECK(rx_prober.Drain() == 0);
  // Both blocks are the state file's: a restart keeps them.
  CHECK(d.Stop() == 0);
  d.Start();
  CHECK(EffectiveAction(d, "198.51.100.2") == "block");
  CHECK(EffectiveAction(d, kProber) == "block");
}

// Points `link` at `target` atomically (a new symlink renamed over the old one, as `ln -sfn`
// with a temporary name or config management does).
void Repoint(const std::string& link, const std::string& target) {
  const std::string tmp = link + ".new";
  std::filesystem::remove(tmp);
  std::filesystem::create_symlink(target, tmp);
  std::filesystem::rename(tmp, link);
}

// Operators keep list files behind symlinks (a feed's current version, a shared directory). A
// symlink to a regular file is read; one to a FIFO, a device or nothing is refused at reload with
// the file named, and the policy in force stays; so is a list file past the size cap.
TEST_CASE("list files behind symlinks: followed to regular files, refused otherwise, rewrites of the target reload", "[adversarial]") {
  Topology t;
  const std::string lists = t.dir() + "/lists", data = t.dir() + "/data";
  std::filesystem::create_directories(lists);
  std::filesystem::create_directories(data);
  const std::string link = lists + "/feed.txt", v1 = data + "/feed-v1.txt";
  WriteFile(v1, "198.51.100.2/32\n203.0.113.0/24\n");
  std::filesystem::create_symlink(v1, link);
  REQUIRE(mkfifo((data + "/fifo").c_str(), 0600) == 0);
  Daemon d(t, "ports: [443]\nlists:\n  - name: feed\n    action: block\n    files: [" + link + "]\n");
  UdpReceiver rx(t.host(), kHostV4, 9999);
  {
    UdpFlood flood(t.server(), kHostV4, 9999, t.dir() + "/sent0");
    Settle(300);
    REQUIRE(flood.Stop() > 100u);
    REQUIRE(rx.Drain() > kGetsThrough);
  }
  d.Start();
  rx.Drain();
  UdpFlood prober(t.server(), kHostV4, 9999, t.dir() + "/sent1");
  CHECK(EffectiveAction(d, kServerV4) == "block");
  CHECK(d.Status()["prefixes"]["v4"] == 2);
  auto reloads = [&](const char* which) { return d.Status()["last_reload"][which].get<int>(); };

  struct Bad {
    std::string target, why;
  };
  const std::vector<Bad> bad = {
      {data + "/fifo", "is a FIFO"},
      {"/dev/zero", "is a character device"},
      {data + "/missing.txt", "cannot open: No such file or directory"},
  };
  for (const Bad& b : bad) {
    INFO("symlink to " << b.target);
    const int failed = reloads("reloads_failed");
    Repoint(link, b.target);
    // The link's directory is watched: its re-pointing is a change, and refused.
    CHECK(WaitFor([&] { return reloads("reloads_failed") == failed + 1; }, 3000));
    std::string out;
    CHECK(d.Cli("reload", &out) == 1);
    CHECK(out.find(link + ": " + b.why) != std::string::npos);
    json s = d.Status();
    CHECK(s["ok"] == true);
    CHECK(s["last_reload"]["error"].get<std::string>().find(link) != std::string::npos);
    CHECK(s["prefixes"]["v4"] == 2);
    CHECK(EffectiveAction(d, kServerV4) == "block");
  }
  // Back to a regular file: re-pointing the link reloads by itself.
  int ok = reloads("reloads_ok");
  Repoint(link, v1);
  CHECK(WaitFor([&] { return reloads("reloads_ok") == ok + 1; }, 3000));
  CHECK(d.Status()["last_reload"]["ok"] == true);

  // The target rewritten in place (the link's directory sees nothing of it), then replaced by a
  // rename: each is reloaded.
  ok = reloads("reloads_ok");
  WriteFile(v1, "198.51.100.2/32\n203.0.113.0/24\n198.51.100.77/32\n");
  CHECK(WaitFor([&] { return reloads("reloads_ok") == ok + 1; }, 3000));
  CHECK(EffectiveAction(d, "198.51.100.77") == "block");
  ok = reloads("reloads_ok");
  WriteFile(data + "/feed-v1.txt.new", "198.51.100.2/32\n203.0.113.0/24\n198.51.100.78/32\n");
  std::filesystem::rename(data + "/feed-v1.txt.new", v1);
  CHECK(WaitFor([&] { return reloads("reloads_ok") == ok + 1; }, 3000));
  CHECK(EffectiveAction(d, "198.51.100.78") == "block");
  CHECK(EffectiveAction(d, "198.51.100.77") == "none");

  // The target replaced by a file past the size cap (sparse: 300 MiB of nothing, over the
  // default 256 MiB): refused, the last good list stays.
  const int failed = reloads("reloads_failed");
  const std::string huge = data + "/huge.txt";
  {
    int fd = ::open(huge.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, off_t{300} << 20) == 0);
    ::close(fd);
  }
  std::filesystem::rename(huge, v1);
  CHECK(WaitFor([&] { return reloads("reloads_failed") == failed + 1; }, 3000));
  std::string out;
  CHECK(d.Cli("reload", &out) == 1);
  INFO(out);
  CHECK(out.find(link + ": 314572800 bytes or more, over the limit") != std::string::npos);
  CHECK(EffectiveAction(d, kServerV4) == "block");
  CHECK(EffectiveAction(d, "198.51.100.78") == "block");

  const uint64_t sent = prober.Stop();
  CHECK(sent > 1000u);
  CHECK(rx.Drain() == 0);
  CHECK(d.Status()["ok"] == true);
  CHECK(d.Stop() == 0);
}

// A large block list of /32s and /24s (public-looking ranges, only ever in the maps and in
// BPF_PROG_TEST_RUN frames) made of two halves: chunk k and chunk k+1, so that consecutive
// versions share one half and each reload adds and removes a half. The prober (198.51.100.2) is
// in every version, as a /32, a /30 or the whole /24 by turns.
struct BigList {
  // Chunk k: n prefixes in (20 + k).0.0.0/8, a quarter /24s in its upper half, the rest /32s in
  // its lower half (n at most 2^17, so that neither spills over).
  static std::vector<uint32_t> Chunk(uint32_t k, uint32_t n) {
    std::vector<uint32_t> v;  // host order
    v.reserve(n);
    const uint32_t net = (20u + k) << 24;
    for (uint32_t i = 0; i < n; ++i)
      v.push_back(i % 4 == 3 ? (net | 0x800000u | ((i / 4) << 8)) : (net | (i * 3 + 1)));
    return v;
  }
  static bool IsNet(uint32_t a) { return (a & 0x800000u) != 0; }
  static std::string Text(uint32_t k, uint32_t n) {
    static const char* prober[] = {"198.51.100.2/32", "198.51.100.0/30", "198.51.100.0/24"};
    std::string out = std::string("# version ") + std::to_string(k) + "\n" + prober[k % 3] + "\n";
    out.reserve(n * 2 * 17);
    for (uint32_t c : {k, k + 1})
      for (uint32_t a : Chunk(c, n)) {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u/%d\n", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
                      a & 255, IsNet(a) ? 24 : 32);
        out += buf;
      }
    return out;
  }
  static std::string Ip(uint32_t a) {
    return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
           std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
  }
};

// Writes `text` to `path` by rename, as a feed updater does.
void ReplaceFile(const std::string& path, const std::string& text) {
  WriteFile(path + ".tmp", text);
  std::filesystem::rename(path + ".tmp", path);
}

// Kill -9 during a reload leaves the maps half-way between two versions (adds go first, removals
// last). The prober, in both versions, must never pass meanwhile nor while the daemon is down,
// and the next start must bring the maps to the file's version exactly.
TEST_CASE("kill -9 at random points of large reloads: the prober gets nothing through, the restart converges", "[adversarial]") {
  // Under emulation (BW_TEST_TIME_SCALE > 1, the VM suite) a smaller list and fewer rounds.
  const bool slow = TimeScale() > 1;
  const uint32_t half = slow ? 30000 : 120000;  // prefixes per chunk; a version holds two
  const int rounds = slow ? 3 : 6;
  const uint32_t seed = std::random_device{}();
  INFO("seed " << seed << " (BW_TEST_SEED reruns it), " << 2 * half << " prefixes a version, "
       << rounds << " rounds");
  std::mt19937 rng(std::getenv("BW_TEST_SEED") ? std::stoul(std::getenv("BW_TEST_SEED")) : seed);

  Topology t;
  const std::string list = t.dir() + "/big.txt";
  ReplaceFile(list, BigList::Text(0, half));
  Daemon d(t, "ports: [443]\nlists:\n  - name: big\n    action: block\n    files: [" + list + "]\n");
  UdpReceiver rx(t.host(), kHostV4, 9999);
  {
    UdpFlood flood(t.server(), kHostV4, 9999, t.dir() + "/sent0");
    Settle(300);
    REQUIRE(flood.Stop() > 100u);
    REQUIRE(rx.Drain() > kGetsThrough);
  }
  d.Start();
  rx.Drain();
  UdpFlood prober(t.server(), kHostV4, 9999, t.dir() + "/sent1");
  auto reloads_ok = [&] { return d.Status()["last_reload"]["reloads_ok"].get<int>(); };

  // One reload undisturbed, timed from the rename to its end: the window the kills fall in.
  int ok = reloads_ok();
  auto t0 = std::chrono::steady_clock::now();
  ReplaceFile(list, BigList::Text(1, half));
  REQUIRE(WaitFor([&] { return reloads_ok() == ok + 1; }, 20000));
  const int window_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::steady_clock::now() - t0).count());
  INFO("an undisturbed reload: " << window_ms << " ms from the rename; " << d.Status()["last_reload"]["summary"]);
  // Nothing happens in the first 200 ms: the daemon waits that long after a change (an editor's
  // save is several events) before it reloads.
  std::uniform_int_distribution<int> delay(200, std::max(200, window_ms));

  // Where a kill fell, read from what the next start's apply had left to do: the whole change
  // (before the reload wrote anything), nothing (after it), or part of it (during).
  int before = 0, during = 0, after = 0;
  auto classify = [&](const std::string& summary) {
    std::smatch m;
    REQUIRE(std::regex_search(summary, m, std::regex("added ([0-9]+), updated [0-9]+, removed ([0-9]+)")));
    const uint64_t added = std::stoull(m[1]), removed = std::stoull(m[2]);
    if (added == 0 && removed == 0) ++after;
    else if (added >= half && removed >= half) ++before;
    else ++during;
  };
  uint32_t version = 1;
  for (int r = 0; r < rounds; ++r) {
    ++version;
    const int ms = delay(rng);
    ReplaceFile(list, BigList::Text(version, half));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    d.Kill9();
    // Down: the pinned programs and maps keep enforcing.
    Settle(100);
    d.Start();  // adopts the maps and applies the file's version before it answers
    json s = d.Status();
    INFO("round " << r << ": killed after " << ms << " ms; " << s["last_reload"].dump());
    REQUIRE(s["last_reload"]["ok"] == true);
    REQUIRE(s["adopted"] == true);
    CHECK(s["prefixes"]["v4"] == 2 * half + 1);
    classify(s["last_reload"]["summary"].get<std::string>());
    CHECK(rx.Drain() == 0);
  }
  INFO("kills before a reload wrote anything: " << before << ", during: " << during
       << ", after it ended: " << after);

  // The kernel's verdicts are the last version's: run frames through the attached program.
  Fd prog = LiveXdpProgram(d);
  auto verdict = [&](uint32_t src) {
    Bytes frame = PacketBuilder().ipv4(BigList::Ip(src), kHostV4).udp(40000, 9999).payload("x").build();
    auto v = RunFrame(prog.get(), /*xdp=*/true, frame);
    REQUIRE(v.ok());
    return *v;
  };
  std::mt19937 pick(rng());
  size_t wrong_in = 0, wrong_out = 0, checked = 0;
  for (uint32_t c : {version - 1, version, version + 1}) {
    const bool listed = c != version - 1;  // chunk version-1 left with the last reload
    std::vector<uint32_t> chunk = BigList::Chunk(c, half);
    for (int i = 0; i < 2000; ++i) {
      uint32_t a = chunk[pick() % chunk.size()];
      if (BigList::IsNet(a)) a |= pick() % 256;  // any host of a listed /24
      const uint32_t v = verdict(a);
      ++checked;
      if (listed && v != XDP_DROP) ++wrong_in;
      if (!listed && v != XDP_PASS) ++wrong_out;
    }
  }
  CHECK(checked == 6000u);
  CHECK(wrong_in == 0u);
  CHECK(wrong_out == 0u);
  CHECK(verdict((198u << 24) | (51u << 16) | (100u << 8) | 2u) == XDP_DROP);
  // And the daemon's own view agrees.
  CHECK(EffectiveAction(d, BigList::Ip(BigList::Chunk(version + 1, half)[5])) == "block");
  CHECK(EffectiveAction(d, BigList::Ip(BigList::Chunk(version - 1, half)[5])) == "none");

  const uint64_t sent = prober.Stop();
  INFO("prober sent " << sent);
  CHECK(sent > 1000u);
  CHECK(rx.Drain() == 0);
  CHECK(d.Stop() == 0);
}

}  // namespace
}  // namespace bw::test
