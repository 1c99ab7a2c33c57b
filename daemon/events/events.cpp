#include "daemon/events/events.hpp"

#include <cerrno>
#include <cstring>

#include "maps/maps.hpp"

namespace bw {

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::Create(int ringbuf_fd, Handler handler,
                                                                 const WatchV4Map* v4_trie) {
  std::unique_ptr<EventReader> r(new EventReader());
  r->handler_ = std::move(handler);
  if (v4_trie) r->v4_resolver_ = [v4_trie](const uint8_t* a) { return LookupV4(*v4_trie, a); };
  r->rb_ = ring_buffer__new(ringbuf_fd, &EventReader::OnRecord, r.get(), nullptr);
  if (!r->rb_) return ErrnoStatus(BW_MAP_EVENTS, "ring_buffer__new", errno);
  return r;
}

EventReader::~EventReader() {
  if (rb_) ring_buffer__free(rb_);
}

int EventReader::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<EventReader*>(ctx);
  if (size != sizeof(bw_event)) {
    self->malformed_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  // Ring-buffer records are 8-byte aligned and sized exactly: read in place, or completed in a copy.
  const auto* ev = static_cast<const bw_event*>(data);
  if (self->v4_resolver_ && (ev->flags & BW_EVF_DETAIL)) {
    bw_event full = *ev;
    CompleteEventWith(&full, self->v4_resolver_);
    self->handler_(full);
  } else {
    self->handler_(*ev);
  }
  self->delivered_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

absl::Status EventReader::AddSockRing(int ringbuf_fd, SockHandler handler) {
  sock_handler_ = std::move(handler);
  int e = ring_buffer__add(rb_, ringbuf_fd, &EventReader::OnSockRecord, this);
  if (e != 0) return ErrnoStatus(BW_MAP_SOCK_EV, "ring_buffer__add", -e);
  return absl::OkStatus();
}

int EventReader::OnSockRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<EventReader*>(ctx);
  if (size != sizeof(bw_sock_event)) {
    self->malformed_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  self->sock_handler_(*static_cast<const bw_sock_event*>(data));
  self->delivered_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

absl::StatusOr<int> EventReader::Drain() {
  int n = ring_buffer__consume(rb_);
  if (n < 0) return ErrnoStatus(BW_MAP_EVENTS, "ring_buffer__consume", -n);
  return n;
}

int EventReader::epoll_fd() const { return ring_buffer__epoll_fd(rb_); }

}  // namespace bw
