// control.hpp — the daemon's control socket (server) and the CLI's side of it (client).
//
// Contract: a SOCK_STREAM Unix socket, mode 0600 (0660 with a group: ControlAccess). A client sends one request: a JSON object on
// one line with "cmd" and its arguments. The server answers with one JSON object line ("ok": true
// plus results, or "ok": false and "error"), then closes — except when the handler asks to follow
// ({"cmd":"events","follow":true}): that connection then goes to the follower callback (the event
// pipeline), which streams every later EVE line to it. The server reads nothing of a request but
// its JSON syntax; the handler checks the rest (control_request.hpp). No exception from the
// handler escapes: it is answered as an internal error and the daemon goes on. Connections are
// served by a RequestServer (request_server.hpp): never blocking the loop, 2 s per request, at
// most kMaxConnections open, requests up to kMaxRequestBytes. Listen() makes the socket's
// directory only when it is missing (never chmods one that exists), replaces a socket nobody
// answers on, and refuses a live one (another daemon's) or anything that is not a socket; the
// socket is removed at the end only if it is still the one this server made. Requests are handled
// on the daemon's loop thread, one at a time (which also serializes reloads and runtime list
// changes).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/control/request_server.hpp"

namespace bw {

inline constexpr const char* kControlSocketDefault = "/run/bannerwatch/control.sock";

// Who may use the control socket (the policy's control_group / control_admin_group). Default: the
// socket is mode 0600, so only the daemon's user (and root) connect, and only uid 0 may change
// the daemon's state. `group`: the socket is chowned to it and made 0660, so its members connect;
// what they may do is the read-only commands (status, query, events, list). Commands that change
// the daemon's state (every other one) are served to peers with uid 0 or with `admin_group` among
// their groups (SO_PEERCRED's gid and SO_PEERGROUPS, as they were at connect); others are answered
// an error naming what is needed. An unknown group fails Listen().
struct ControlAccess {
  std::string group;
  std::string admin_group;
};
// True for the commands any connecting peer may use.
bool ReadOnlyControlCommand(std::string_view cmd);

class ControlServer {
 public:
  struct Reply {
    nlohmann::json body;
    bool follow = false;  // keep the connection as a follower after sending body
  };
  using Handler = std::function<Reply(const nlohmann::json& request)>;
  // Takes ownership of a connection whose request asked to follow, after its reply is sent.
  using Follower = std::function<void(int fd)>;
  static constexpr size_t kMaxConnections = 64;
  static constexpr size_t kMaxRequestBytes = 64 * 1024;

  static absl::StatusOr<std::unique_ptr<ControlServer>> Listen(const std::string& path,
                                                              Handler handler,
                                                              Follower follower = nullptr,
                                                              ControlAccess access = {});
  ~ControlServer();
  // An epoll fd: when readable, call OnReadable().
  int fd() const { return server_->fd(); }
  // Accepts, reads and answers as far as the sockets allow now; never blocks.
  void OnReadable() { server_->OnReadable(); }
  // Closes connections past their 2 s (call from the loop's timer).
  void ExpireDeadlines(absl::Time now) { server_->ExpireDeadlines(now); }
  const RequestServer& connections() const { return *server_; }

 private:
  ControlServer() = default;
  Reply Serve(std::string_view line);
  // "" when the peer on fd may run `cmd`, else why not.
  std::string Refusal(int fd, const std::string& cmd) const;
  std::string path_;
  std::string admin_group_;
  gid_t admin_gid_ = 0;
  bool bound_ = false;  // path_ is the socket this server bound (dev_, ino_): its to remove
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  Handler handler_;
  std::unique_ptr<RequestServer> server_;
};

// Client: sends `request` and returns the (first) response. When on_follow_line is given and the
// response is ok, on_response sees that response first, then on_follow_line gets every streamed
// line until it returns false (the response is returned) or the daemon ends the stream (an
// Unavailable error: "the daemon closed the event stream"). Errors name the socket path; a
// socket this user may not connect to is PermissionDenied ("permission denied on PATH"), one
// nobody serves (or no socket) asks whether `bannerwatch run` is running.
absl::StatusOr<nlohmann::json> ControlCall(
    const std::string& path, const nlohmann::json& request,
    const std::function<bool(const std::string& line)>& on_follow_line = nullptr,
    const std::function<void(const nlohmann::json&)>& on_response = nullptr);

}  // namespace bw
