#include "daemon/control/request_server.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/service/log.hpp"

namespace bw {

RequestServer::RequestServer(int listen_fd, Options options, Framer framer, Handler handler,
                             Keeper keeper)
    : listen_fd_(listen_fd),
      epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      opts_(std::move(options)),
      framer_(std::move(framer)),
      handler_(std::move(handler)),
      keeper_(std::move(keeper)) {
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.fd = listen_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &e);
}

RequestServer::~RequestServer() {
  for (auto& [fd, c] : conns_) ::close(fd);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void RequestServer::OnReadable() {
  epoll_event evs[32];
  int n = epoll_wait(epoll_fd_, evs, 32, 0);
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.fd == listen_fd_)
      Accept();
    else
      OnConn(evs[i].data.fd, evs[i].events);
  }
}

void RequestServer::Accept() {
  while (true) {
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) return;  // EAGAIN: nothing more pending (or a transient error: next time)
    if (conns_.size() >= opts_.max_connections && !EvictOldestReader()) {
      if (refused_busy_++ == 0)
        Log(absl::StrCat(opts_.name, ": ", conns_.size(),
                         " connections busy answering, refusing more (counted)"),
            LogLevel::kWarning);
      (void)!::send(c, opts_.busy_response.data(), opts_.busy_response.size(),
                    MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(c);
      continue;
    }
    Conn& conn = conns_[c];
    conn.accepted = absl::Now();
    conn.deadline = conn.accepted + opts_.deadline;
    epoll_event e{};
    e.events = EPOLLIN | EPOLLRDHUP;
    e.data.fd = c;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c, &e);
  }
}

bool RequestServer::EvictOldestReader() {
  int oldest = -1;
  absl::Time when = absl::InfiniteFuture();
  for (const auto& [fd, c] : conns_)
    if (!c.writing && c.accepted < when) {
      oldest = fd;
      when = c.accepted;
    }
  if (oldest < 0) return false;
  // Give it its last chance: a whole request waiting in its socket is still answered.
  OnConn(oldest, 0);
  auto it = conns_.find(oldest);
  if (it != conns_.end() && !it->second.writing) {
    if (evicted_++ == 0)
      Log(absl::StrCat(opts_.name, ": ", conns_.size(),
                       " connections open, closing the oldest idle one for each new one (counted)"),
          LogLevel::kWarning);
    Close(oldest);
  }
  return conns_.size() < opts_.max_connections;
}

void RequestServer::OnConn(int fd, uint32_t events) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  if (c.writing) {
    if (events & (EPOLLERR | EPOLLHUP)) return Close(fd);
    return Flush(fd, c);
  }
  char buf[4096];
  bool eof = false;
  while (true) {
    ssize_t r = ::recv(fd, buf, sizeof(buf), 0);
    if (r > 0) {
      c.in.append(buf, static_cast<size_t>(r));
      if (c.in.size() > opts_.max_request_bytes) break;
      continue;
    }
    if (r == 0) eof = true;
    else if (errno == EINTR) continue;
    else if (errno != EAGAIN && errno != EWOULDBLOCK) return Close(fd);
    break;
  }
  size_t len = framer_(c.in, eof);
  if (len == std::string::npos) {
    if (c.in.size() > opts_.max_request_bytes)
      return Respond(fd, c, opts_.too_large_response, false);
    if (eof) return Close(fd);  // went away without a request
    return;                     // more to come (within the deadline)
  }
  current_fd_ = fd;
  Response r = handler_(std::string_view(c.in).substr(0, len));
  current_fd_ = -1;
  Respond(fd, c, std::move(r.bytes), r.keep && keeper_);
}

void RequestServer::Respond(int fd, Conn& c, std::string bytes, bool keep) {
  c.in.clear();
  c.in.shrink_to_fit();
  c.out = std::move(bytes);
  c.out_off = 0;
  c.keep = keep;
  c.writing = true;
  c.deadline = absl::Now() + opts_.deadline;  // the response's own window: a reader that stalls
  epoll_event e{};
  e.events = EPOLLOUT;
  e.data.fd = fd;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &e);
  Flush(fd, c);
}

void RequestServer::Flush(int fd, Conn& c) {
  while (c.out_off < c.out.size()) {
    ssize_t w = ::send(fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      c.out_off += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT brings us back
    return Close(fd);
  }
  if (c.keep) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    conns_.erase(fd);
    keeper_(fd);
    return;
  }
  Close(fd);
}

void RequestServer::Close(int fd) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  conns_.erase(fd);
}

void RequestServer::ExpireDeadlines(absl::Time now) {
  std::vector<int> late;
  for (const auto& [fd, c] : conns_)
    if (now >= c.deadline) late.push_back(fd);
  for (int fd : late) {
    auto it = conns_.find(fd);
    if (it == conns_.end()) continue;
    // A request that arrived whole while the handler was busy with another (a long reload) is
    // the server's delay, not the client's: it is read and answered now.
    if (!it->second.writing) {
      OnConn(fd, 0);
      it = conns_.find(fd);
      if (it == conns_.end() || it->second.writing) continue;
    }
    ++timed_out_;
    Close(fd);
  }
}

}  // namespace bw
