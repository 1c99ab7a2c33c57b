// request_server.hpp — one request per connection, served without ever blocking the caller.
//
// Contract: owns a listening stream socket (non-blocking) and every connection accepted on it.
// fd() is an epoll fd the caller's loop waits on; OnReadable() then accepts, reads and writes as
// far as each socket allows at that moment and returns — a client that sends one byte a second,
// or nothing, costs the loop nothing. A connection gets `deadline` from accept to its response
// being fully sent; ExpireDeadlines(now), called from the loop's timer, closes those past it. At
// most `max_connections` are open: one more is answered `busy_response` (as far as the socket
// takes it at once) and closed. A request is complete when the framer says so (or the peer
// half-closes with bytes sent); one longer than `max_request_bytes` is answered
// `too_large_response` and closed. The handler runs on the caller's thread, one request at a time.
// When its response says `keep`, the connection is handed to the keeper once the response is out
// (e.g. an event follower); otherwise it is closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace bw {

class RequestServer {
 public:
  struct Options {
    std::string name;  // "control", "metrics": for the log line when a limit is hit
    size_t max_connections = 64;
    size_t max_request_bytes = 64 * 1024;
    absl::Duration deadline = absl::Seconds(2);
    std::string busy_response;
    std::string too_large_response;
  };
  // The length of the complete request at the start of `received`, or npos while incomplete.
  // `eof`: the peer has half-closed, nothing more will come.
  using Framer = std::function<size_t(std::string_view received, bool eof)>;
  struct Response {
    std::string bytes;
    bool keep = false;  // hand the connection to the keeper after sending
  };
  using Handler = std::function<Response(std::string_view request)>;
  using Keeper = std::function<void(int fd)>;  // takes ownership

  // Takes ownership of listen_fd (non-blocking, listening).
  RequestServer(int listen_fd, Options options, Framer framer, Handler handler,
                Keeper keeper = nullptr);
  ~RequestServer();
  RequestServer(const RequestServer&) = delete;
  RequestServer& operator=(const RequestServer&) = delete;

  int fd() const { return epoll_fd_; }
  void OnReadable();
  void ExpireDeadlines(absl::Time now);

  // Inside the handler: the connection whose request it serves (e.g. for its SO_PEERCRED);
  // -1 elsewhere.
  int current_fd() const { return current_fd_; }
  size_t open_connections() const { return conns_.size(); }
  uint64_t refused_busy() const { return refused_busy_; }
  uint64_t evicted() const { return evicted_; }
  uint64_t timed_out() const { return timed_out_; }

 private:
  struct Conn {
    std::string in;
    std::string out;
    size_t out_off = 0;
    bool writing = false;
    bool keep = false;
    absl::Time accepted;
    absl::Time deadline;
  };
  void Accept();
  // At the limit: closes the connection accepted first among those still reading; false when
  // none is (every one is being answered).
  bool EvictOldestReader();
  void OnConn(int fd, uint32_t events);
  // Sends what the socket takes now; finishes the connection when all is out.
  void Flush(int fd, Conn& c);
  void Respond(int fd, Conn& c, std::string bytes, bool keep);
  void Close(int fd);

  int listen_fd_;
  int epoll_fd_;
  Options opts_;
  Framer framer_;
  Handler handler_;
  Keeper keeper_;
  std::map<int, Conn> conns_;
  uint64_t refused_busy_ = 0, evicted_ = 0, timed_out_ = 0;
  int current_fd_ = -1;
};

}  // namespace bw
