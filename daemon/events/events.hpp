// events.hpp — reads struct bw_event records from the data plane's ring buffer.
//
// Contract: a reader wraps libbpf's ring_buffer on the events map fd and calls the handler once per
// record, in order, on the calling thread. Records the kernel buffered before the reader existed
// (e.g. while the daemon was down; the ring is pinned) are delivered first. A record of the wrong
// size is counted as malformed and skipped. epoll_fd() lets a caller wait on it with other fds.
// Events the pre-filter decided are completed before the handler sees them (CompleteEvent in
// maps/maps.hpp): through a resolver when one is set (the daemon's: the applied policy in memory),
// else from the IPv4 trie when given (a syscall per event).
#pragma once

#include <bpf/libbpf.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "maps/bannerwatch_abi.h"
#include "maps/maps.hpp"

namespace bw {

class EventReader {
 public:
  using Handler = std::function<void(const bw_event&)>;

  // `v4_trie` (not owned, may be null: events as the kernel wrote them) must outlive the reader; it
  // is the resolver until set_v4_resolver replaces it.
  static absl::StatusOr<std::unique_ptr<EventReader>> Create(int ringbuf_fd, Handler handler,
                                                             const WatchV4Map* v4_trie = nullptr);
  ~EventReader();
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // The longest match of a remote IPv4 address (network order) for completing events, or nullopt.
  using V4Resolver = std::function<std::optional<bw_list_value>(const uint8_t* addr4)>;
  void set_v4_resolver(V4Resolver r) { v4_resolver_ = std::move(r); }

  // Host-context records (struct bw_sock_event, bpf/host.bpf.c) from a second ring buffer, read by
  // the same Drain() and epoll_fd(); records of the wrong size are counted as malformed.
  using SockHandler = std::function<void(const bw_sock_event&)>;
  absl::Status AddSockRing(int ringbuf_fd, SockHandler handler);

  // Handles every record available now, without waiting (wait on epoll_fd() first).
  absl::StatusOr<int> Drain();
  int epoll_fd() const;

  // Readable from any thread (the daemon's status reads them while the pipeline thread counts).
  uint64_t delivered() const { return delivered_.load(std::memory_order_relaxed); }
  uint64_t malformed() const { return malformed_.load(std::memory_order_relaxed); }

 private:
  EventReader() = default;
  static int OnRecord(void* ctx, void* data, size_t size);
  static int OnSockRecord(void* ctx, void* data, size_t size);
  ring_buffer* rb_ = nullptr;
  Handler handler_;
  SockHandler sock_handler_;
  V4Resolver v4_resolver_;
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> malformed_{0};
};

}  // namespace bw
