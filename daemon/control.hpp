// control.hpp — the daemon's control socket (server) and the CLI's side of it (client).
//
// Contract: a SOCK_STREAM Unix socket, mode 0600. A client sends one request: a JSON object on
// one line with "cmd" and its arguments. The server answers with one JSON object line ("ok": true
// plus results, or "ok": false and "error"), then closes — except for a follow request
// ({"cmd":"events","follow":true}), whose connection stays open and receives every later EVE line
// as it is written. Requests are handled on the daemon's loop thread, one at a time (which also
// serializes reloads and runtime list changes). A slow follower is dropped rather than allowed to
// stall the event path.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bw {

inline constexpr const char* kControlSocketDefault = "/run/bannerwatch/control.sock";

class ControlServer {
 public:
  // Returns the response; for a follow request the handler returns the initial response and the
  // server keeps the connection as a follower.
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  static absl::StatusOr<std::unique_ptr<ControlServer>> Listen(const std::string& path,
                                                              Handler handler);
  ~ControlServer();
  int fd() const { return listen_fd_; }
  // Accepts and serves every pending connection (call when fd() is readable).
  void OnReadable();
  // Sends one line to every follower; drops followers that cannot keep up.
  void Broadcast(absl::string_view line);
  size_t followers() const { return followers_.size(); }

 private:
  ControlServer() = default;
  std::string path_;
  int listen_fd_ = -1;
  Handler handler_;
  std::vector<int> followers_;
};

// Client: sends `request` and returns the (first) response. When on_follow_line is given and the
// response is ok, on_response sees that response first, then on_follow_line gets every streamed
// line until it returns false or the daemon closes the connection. Errors name the socket path.
absl::StatusOr<nlohmann::json> ControlCall(
    const std::string& path, const nlohmann::json& request,
    const std::function<bool(const std::string& line)>& on_follow_line = nullptr,
    const std::function<void(const nlohmann::json&)>& on_response = nullptr);

}  // namespace bw
