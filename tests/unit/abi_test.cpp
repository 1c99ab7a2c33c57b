// Layout of the kernel<->user ABI: a change here is a change for both sides, and for anything
// that reads pinned maps (bpftool, an older daemon adopting them). Sizes and offsets are fixed.
#include <catch2/catch.hpp>
#include <cstddef>

#include "maps/bannerwatch_abi.h"
#include "daemon/dataplane/loader.hpp"
#include "maps/maps.hpp"

#define CHECK_FIELD(type, field, off, size)          \
  CHECK(offsetof(type, field) == (off));             \
  CHECK(sizeof(((type*)nullptr)->field) == (size))

TEST_CASE("LPM keys start with a 4-byte prefix length, then the address") {
  CHECK(sizeof(bw_lpm_v4_key) == 8);
  CHECK_FIELD(bw_lpm_v4_key, prefixlen, 0, 4);
  CHECK_FIELD(bw_lpm_v4_key, addr, 4, 4);
  CHECK(sizeof(bw_lpm_v6_key) == 20);
  CHECK_FIELD(bw_lpm_v6_key, prefixlen, 0, 4);
  CHECK_FIELD(bw_lpm_v6_key, addr, 4, 16);
}

TEST_CASE("watchlist value layout") {
  CHECK(sizeof(bw_list_value) == 32);
  CHECK_FIELD(bw_list_value, list_id, 0, 4);
  CHECK_FIELD(bw_list_value, entry_ref, 4, 4);
  CHECK_FIELD(bw_list_value, action, 8, 1);
  CHECK_FIELD(bw_list_value, prefixlen, 9, 1);
  CHECK_FIELD(bw_list_value, hits, 16, 8);
  CHECK_FIELD(bw_list_value, drops, 24, 8);
  CHECK(alignof(bw_list_value) == 8);
}

TEST_CASE("event record layout") {
  CHECK(sizeof(bw_event) == 136);
  CHECK(sizeof(bw_event) % 8 == 0);
  CHECK_FIELD(bw_event, ts_ns, 0, 8);
  CHECK_FIELD(bw_event, ifindex, 8, 4);
  CHECK_FIELD(bw_event, list_id, 12, 4);
  CHECK_FIELD(bw_event, entry_ref, 16, 4);
  CHECK_FIELD(bw_event, suppressed, 20, 4);
  CHECK_FIELD(bw_event, kind, 24, 1);
  CHECK_FIELD(bw_event, direction, 25, 1);
  CHECK_FIELD(bw_event, family, 26, 1);
  CHECK_FIELD(bw_event, verdict, 27, 1);
  CHECK_FIELD(bw_event, list_action, 28, 1);
  CHECK_FIELD(bw_event, prefixlen, 29, 1);
  CHECK_FIELD(bw_event, l4proto, 30, 1);
  CHECK_FIELD(bw_event, tcp_flags, 31, 1);
  CHECK_FIELD(bw_event, saddr, 32, 16);
  CHECK_FIELD(bw_event, daddr, 48, 16);
  CHECK_FIELD(bw_event, sport, 64, 2);
  CHECK_FIELD(bw_event, dport, 66, 2);
  CHECK_FIELD(bw_event, banner_side, 68, 1);
  CHECK_FIELD(bw_event, banner_len, 69, 1);
  CHECK_FIELD(bw_event, match, 70, 1);
  CHECK_FIELD(bw_event, flags, 71, 1);
  CHECK_FIELD(bw_event, banner, 72, BW_BANNER_MAX);
}

TEST_CASE("config, flow and rate-limit layouts") {
  CHECK(sizeof(bw_config) == 16);
  CHECK_FIELD(bw_config, banner_action, 0, 2);
  CHECK_FIELD(bw_config, flags, 2, 1);
  CHECK_FIELD(bw_config, block_event_budget, 4, 4);
  CHECK_FIELD(bw_config, block_event_interval_ns, 8, 8);
  CHECK(sizeof(bw_flow_key) == 40);
  CHECK_FIELD(bw_flow_key, a_addr, 0, 16);
  CHECK_FIELD(bw_flow_key, b_addr, 16, 16);
  CHECK_FIELD(bw_flow_key, a_port, 32, 2);
  CHECK_FIELD(bw_flow_key, b_port, 34, 2);
  CHECK_FIELD(bw_flow_key, family, 36, 1);
  CHECK(sizeof(bw_flow_value) == 16);
  CHECK(sizeof(bw_block_rl_slot) == 32);
  CHECK_FIELD(bw_block_rl_slot, last_ns, 16, 8);
  CHECK_FIELD(bw_block_rl_slot, suppressed, 24, 4);
  CHECK_FIELD(bw_block_rl_slot, family, 28, 1);
  CHECK_FIELD(bw_block_rl_slot, owner, 29, 1);
  CHECK(sizeof(bw_block_budget) == 32);
  CHECK_FIELD(bw_block_budget, window_ns, 0, 8);
  CHECK_FIELD(bw_block_budget, used, 8, 4);
  CHECK_FIELD(bw_block_budget, jiffies, 16, 8);
  CHECK_FIELD(bw_block_budget, coarse_ns, 24, 8);
  CHECK(sizeof(bw_v4_host_bucket) == 64);  // one cache line
  CHECK(BW_V4_HOST_SLOTS * 8 == 64);
  CHECK(sizeof(bw_v4_class) == 8);
  CHECK_FIELD(bw_v4_class, list_id, 0, 4);
  CHECK_FIELD(bw_v4_class, action, 4, 1);
  CHECK(sizeof(bw_v4_cls_cnt) == 16);
  CHECK_FIELD(bw_v4_cls_cnt, hits, 0, 8);
  CHECK_FIELD(bw_v4_cls_cnt, drops, 8, 8);
}

TEST_CASE("IPv4 pre-filter layout: one byte per /24, a class in 4 bits, the hosts bit above") {
  CHECK(uint64_t{BW_V4_PRE_ELEMS} * 8 == (uint64_t{1} << 24));
  CHECK(uint64_t{BW_V4_PRE_ELEMS} * 8 == 16u * 1024 * 1024);  // 16 MiB
  CHECK(BW_V4_PRE_TRIE == BW_V4_PRE_CLASS_MASK);
  CHECK((BW_V4_PRE_HOSTS & BW_V4_PRE_CLASS_MASK) == 0);
  CHECK((BW_V4_PRE_CHUNKS & (BW_V4_PRE_CLASS_MASK | BW_V4_PRE_HOSTS)) == 0);
  // A chunk entry's flag sits between the class (bits 32-35) and LIVE/DEAD.
  CHECK((BW_V4_HOST_CHUNK & (uint64_t{BW_V4_PRE_CLASS_MASK} << 32)) == 0);
  CHECK(BW_V4_HOST_CHUNK < BW_V4_HOST_LIVE);
  CHECK(BW_V4_CLASSES == BW_V4_PRE_CLASS_MASK + 1);
  CHECK((BW_CFG_PREFILTER & BW_CFG_NON_TLS) == 0);
}

TEST_CASE("IPv4 pre-filter summary layout: a bit per /22, two bits per /24") {
  CHECK(BW_V4_SUM_L0_SHIFT == 10u);
  CHECK(uint64_t{BW_V4_SUM_L0_ELEMS} * 64 == (uint64_t{1} << 22));
  CHECK(uint64_t{BW_V4_SUM_L1_ELEMS} * 32 == (uint64_t{1} << 24));
  CHECK(BW_V4_SUM_ELEMS == BW_V4_SUM_L0_ELEMS + BW_V4_SUM_L1_ELEMS + 2);  // + the format mark
  CHECK(BW_V4_SUM_HOSTS == 2u);
  CHECK(BW_V4_SUM_READ_PRE == 3u);
}

TEST_CASE("counters: one named u64 per enum value, names in enum order") {
  CHECK(sizeof(bw_counters) == BW_CNT__MAX * 8);
  CHECK(offsetof(bw_counters, packets) == BW_CNT_packets * 8);
  CHECK(offsetof(bw_counters, events_suppressed) == BW_CNT_events_suppressed * 8);
  CHECK(offsetof(bw_counters, block_drops) == BW_CNT_block_drops * 8);
  CHECK(std::string(bw::kCounterNames[BW_CNT_events_lost]) == "events_lost");
  CHECK(std::string(bw::kCounterNames[0]) == "packets");
}

TEST_CASE("action bits are distinct and ordered by precedence") {
  CHECK((BW_ACTION_WATCH & BW_ACTION_BLOCK) == 0);
  CHECK((BW_ACTION_BLOCK & BW_ACTION_SAFELIST) == 0);
  CHECK(BW_ACTION_SAFELIST > BW_ACTION_BLOCK);
  CHECK(BW_ACTION_BLOCK > BW_ACTION_WATCH);
}

TEST_CASE("map and program names fit bpftool's 15 characters") {
  // Every map of the object (the skeleton's list), and the programs.
  std::vector<std::string> names = bw::DataPlaneMapNames();
  CHECK(names.size() >= 14);
  names.push_back(BW_PROG_XDP);
  names.push_back(BW_PROG_TC);
  for (const std::string& n : names) {
    INFO(n);
    CHECK(n.size() <= 15);
  }
}

TEST_CASE("host-context layouts: connection key, process record, its event, executable") {
  CHECK(sizeof(bw_sock_key) == 40);
  CHECK_FIELD(bw_sock_key, laddr, 0, 16);
  CHECK_FIELD(bw_sock_key, raddr, 16, 16);
  CHECK_FIELD(bw_sock_key, lport, 32, 2);
  CHECK_FIELD(bw_sock_key, rport, 34, 2);
  CHECK_FIELD(bw_sock_key, family, 36, 1);
  CHECK(sizeof(bw_proc) == 72);
  CHECK_FIELD(bw_proc, ts_ns, 0, 8);
  CHECK_FIELD(bw_proc, start_boottime_ns, 8, 8);
  CHECK_FIELD(bw_proc, cgroup_id, 16, 8);
  CHECK_FIELD(bw_proc, closed_ns, 24, 8);
  CHECK_FIELD(bw_proc, tgid, 32, 4);
  CHECK_FIELD(bw_proc, tid, 36, 4);
  CHECK_FIELD(bw_proc, ppid, 40, 4);
  CHECK_FIELD(bw_proc, uid, 44, 4);
  CHECK_FIELD(bw_proc, gid, 48, 4);
  CHECK_FIELD(bw_proc, origin, 52, 1);
  CHECK_FIELD(bw_proc, comm, 56, 16);
  CHECK(sizeof(bw_sock_event) == 136);
  CHECK_FIELD(bw_sock_event, ts_ns, 0, 8);
  CHECK_FIELD(bw_sock_event, proc, 8, 72);
  CHECK_FIELD(bw_sock_event, laddr, 80, 16);
  CHECK_FIELD(bw_sock_event, raddr, 96, 16);
  CHECK_FIELD(bw_sock_event, lport, 112, 2);
  CHECK_FIELD(bw_sock_event, rport, 114, 2);
  CHECK_FIELD(bw_sock_event, list_id, 116, 4);
  CHECK_FIELD(bw_sock_event, entry_ref, 120, 4);
  CHECK_FIELD(bw_sock_event, kind, 124, 1);
  CHECK_FIELD(bw_sock_event, family, 125, 1);
  CHECK_FIELD(bw_sock_event, l4proto, 126, 1);
  CHECK_FIELD(bw_sock_event, list_action, 127, 1);
  CHECK_FIELD(bw_sock_event, prefixlen, 128, 1);
  CHECK_FIELD(bw_sock_event, hook, 129, 1);
  CHECK(sizeof(bw_exe_key) == 16);
  CHECK_FIELD(bw_exe_key, start_boottime_ns, 0, 8);
  CHECK_FIELD(bw_exe_key, tgid, 8, 4);
  CHECK(sizeof(bw_exe) == 8 + BW_EXE_PATH + BW_EXE_NAME);
  CHECK_FIELD(bw_exe, len, 0, 2);
  CHECK_FIELD(bw_exe, flags, 2, 1);
  CHECK_FIELD(bw_exe, path, 8, BW_EXE_PATH + BW_EXE_NAME);
  CHECK(sizeof(bw_host_cfg) == 8);
  CHECK(sizeof(bw_host_budget) == 16);
  CHECK(sizeof(bw_host_counters) == 8 * BW_HCNT__MAX);
}
