#include "daemon/control/control.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "maps/maps.hpp"

namespace bw {
namespace {

absl::StatusOr<sockaddr_un> Address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof(a.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("control socket path too long: ", path));
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads one line (up to 1 MiB) with the socket's receive timeout.
bool ReadLine(int fd, std::string* line, std::string* rest) {
  std::string buf = std::move(*rest);
  rest->clear();
  char tmp[4096];
  while (true) {
    auto nl = buf.find('\n');
    if (nl != std::string::npos) {
      *line = buf.substr(0, nl);
      *rest = buf.substr(nl + 1);
      return true;
    }
    if (buf.size() > (1u << 20)) return false;
    ssize_t r = ::recv(fd, tmp, sizeof(tmp), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (!buf.empty()) {
        *line = buf;
        return true;
      }
      return false;
    }
    buf.append(tmp, static_cast<size_t>(r));
  }
}

void SetTimeout(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// The gid of group `name`, or NotFound naming the setting.
absl::StatusOr<gid_t> GroupId(const std::string& name, const char* setting) {
  std::vector<char> buf(16384);
  group g{};
  group* found = nullptr;
  int err = getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found);
  if (found == nullptr)
    return absl::NotFoundError(absl::StrCat(setting, ": no group '", name, "' on this host",
                                            err ? absl::StrCat(" (", std::strerror(err), ")") : "",
                                            " (groupadd --system ", name, ")"));
  return g.gr_gid;
}

}  // namespace

bool ReadOnlyControlCommand(std::string_view cmd) {
  return cmd == "status" || cmd == "query" || cmd == "events" || cmd == "list";
}

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Listen(const std::string& path,
                                                                    Handler handler,
                                                                    Follower follower,
                                                                    ControlAccess access) {
  std::unique_ptr<ControlServer> s(new ControlServer());
  s->path_ = path;
  s->handler_ = std::move(handler);
  auto addr = Address(path);
  if (!addr.ok()) return addr.status();
  gid_t group_gid = 0;
  if (!access.group.empty()) {
    auto g = GroupId(access.group, "control_group");
    if (!g.ok()) return g.status();
    group_gid = *g;
  }
  if (!access.admin_group.empty()) {
    auto g = GroupId(access.admin_group, "control_admin_group");
    if (!g.ok()) return g.status();
    s->admin_group_ = access.admin_group;
    s->admin_gid_ = *g;
  }
  // The directory: made (mode 0700) when missing; one that exists is left as it is (/run, /tmp
  // and the like are not the daemon's to chmod).
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && ::mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) return absl::InternalError(absl::StrCat("mkdir ", parent.string(), ": ", ec.message()));
    ::chmod(parent.c_str(), 0700);  // made here, so ours
  }
  // Something at the path already: a socket nobody answers on (a killed daemon's) is replaced;
  // a live one is another daemon's, and anything else is not ours to delete.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return absl::FailedPreconditionError(absl::StrCat(
          "control socket ", path, ": something else is there (not a socket); not touching it"));
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return ErrnoStatus(path, "socket", errno);
    int c = ::connect(probe, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
    int err = errno;
    ::close(probe);
    if (c == 0 || err != ECONNREFUSED)
      return absl::FailedPreconditionError(absl::StrCat(
          "control socket ", path, " is served by another bannerwatch daemon; give this one its ",
          "own (--control) or stop that one"));
    ::unlink(path.c_str());
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoStatus(path, "socket", errno);
  Fd listening(fd);
  mode_t old = umask(0177);
  int b = ::bind(fd, reinterpret_cast<sockaddr*>(&*addr), sizeof(*addr));
  umask(old);
  if (b != 0) return ErrnoStatus(path, "bind", errno);
  struct stat mine {};
  if (::lstat(path.c_str(), &mine) == 0) {
    s->bound_ = true;
    s->dev_ = mine.st_dev;
    s->ino_ = mine.st_ino;
  }
  // The socket was bound here, so it is ours to chown and chmod (the group's before the mode
  // opens it to the group).
  if (!access.group.empty() && ::chown(path.c_str(), static_cast<uid_t>(-1), group_gid) != 0)
    return absl::PermissionDeniedError(absl::StrCat(
        "control socket ", path, ": chown to group ", access.group, " (control_group): ",
        std::strerror(errno), " (the daemon's user must be a member of it, or root)"));
  if (chmod(path.c_str(), access.group.empty() ? 0600 : 0660) != 0)
    return ErrnoStatus(path, "chmod", errno);
  if (::listen(fd, 64) != 0) return ErrnoStatus(path, "listen", errno);
  RequestServer::Options o;
  o.name = absl::StrCat("control socket ", path);
  o.max_connections = kMaxConnections;
  o.max_request_bytes = kMaxRequestBytes;
  o.deadline = absl::Seconds(2);
  o.busy_response = absl::StrCat(
      R"({"ok":false,"error":"busy: )", kMaxConnections, R"( control connections open"})", "\n");
  o.too_large_response = absl::StrCat(R"({"ok":false,"error":"request longer than )",
                                      kMaxRequestBytes, R"( bytes"})", "\n");
  ControlServer* self = s.get();
  s->server_ = std::make_unique<RequestServer>(
      listening.release(), std::move(o),
      [](std::string_view in, bool eof) -> size_t {
        size_t nl = in.find('\n');
        if (nl != std::string_view::npos) return nl + 1;
        return eof && !in.empty() ? in.size() : std::string_view::npos;
      },
      [self](std::string_view request) {
        Reply r = self->Serve(request);
        std::string out =
            r.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        return RequestServer::Response{std::move(out), r.follow};
      },
      std::move(follower));
  return s;
}

ControlServer::~ControlServer() {
  server_.reset();  // closes the listening socket and every connection
  // Only the socket this server made: not what another process put at the path since.
  struct stat st {};
  if (bound_ && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    ::unlink(path_.c_str());
}

std::string ControlServer::Refusal(int fd, const std::string& cmd) const {
  if (ReadOnlyControlCommand(cmd)) return "";
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return absl::StrCat("'", cmd, "' changes the daemon's state: the peer's credentials are "
                        "unknown, so it is refused");
  if (cred.uid == 0) return "";
  if (!admin_group_.empty()) {
    if (cred.gid == admin_gid_) return "";
    std::vector<gid_t> groups(64);
    len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    int r = ::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len);
    if (r != 0 && errno == ERANGE) {  // more groups than room: len says how many
      groups.resize(len / sizeof(gid_t) + 1);
      len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
      r = ::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len);
    }
    // Groups not read are no membership (the zeros left in `groups` would read as gid 0).
    if (r != 0) len = 0;
    for (size_t i = 0; i < len / sizeof(gid_t); ++i)
      if (groups[i] == admin_gid_) return "";
    return absl::StrCat("'", cmd, "' changes the daemon's state: it needs root or membership of "
                        "group '", admin_group_, "' (control_admin_group); this connection is uid ",
                        cred.uid, " gid ", cred.gid, ". Read-only: status, query, events, list");
  }
  return absl::StrCat("'", cmd, "' changes the daemon's state: it needs root (set "
                      "control_admin_group in the policy to allow a group); this connection is "
                      "uid ", cred.uid, ". Read-only: status, query, events, list");
}

ControlServer::Reply ControlServer::Serve(std::string_view line) {
  nlohmann::json req = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded()) return {{{"ok", false}, {"error", "request: not JSON"}}};
  if (req.is_object() && req.contains("cmd") && req["cmd"].is_string()) {
    std::string why = Refusal(server_->current_fd(), req["cmd"].get<std::string>());
    if (!why.empty()) return {{{"ok", false}, {"error", why}}};
  }
  try {
    return handler_(req);
  } catch (const std::exception& e) {
    // The command table should have refused what led here; the daemon goes on either way.
    return {{{"ok", false}, {"error", absl::StrCat("internal error: ", e.what())}}};
  }
}

namespace {

// ControlCall's connect failing, said so that the operator knows what to do: no daemon there,
// or a socket this user may not use (it is mode 0600, in a directory of mode 0700 by default).
absl::Status ConnectError(const std::string& path, int err) {
  if (err == ENOENT || err == ECONNREFUSED)
    return absl::UnavailableError(
        absl::StrCat(path, ": ", std::strerror(err), " (is `bannerwatch run` running?)"));
  if (err != EACCES && err != EPERM) return ErrnoStatus(path, "connect", err);
  struct stat st {};
  std::string whose;
  if (::stat(path.c_str(), &st) != 0) {
    whose = "its directory is closed to this user; run as root";
  } else if (st.st_uid == 0) {
    whose = absl::StrCat("the control socket is root's (mode ",
                         absl::StrFormat("%04o", st.st_mode & 07777), "); run as root");
  } else {
    whose = absl::StrCat("the control socket is uid ", st.st_uid, "'s (mode ",
                         absl::StrFormat("%04o", st.st_mode & 07777), "); run as that user or root");
  }
  return absl::PermissionDeniedError(absl::StrCat("permission denied on ", path, ": ", whose));
}

}  // namespace

absl::StatusOr<nlohmann::json> ControlCall(
    const std::string& path, const nlohmann::json& request,
    const std::function<bool(const std::string& line)>& on_follow_line,
    const std::function<void(const nlohmann::json&)>& on_response) {
  auto addr = Address(path);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(path, "socket", errno);
  Fd owner(fd);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&*addr), sizeof(*addr)) != 0)
    return ConnectError(path, errno);
  SetTimeout(fd, 30000);
  std::string req = request.dump() + "\n";
  if (!WriteAll(fd, req.data(), req.size())) return ErrnoStatus(path, "send", errno);
  std::string line, rest;
  if (!ReadLine(fd, &line, &rest))
    return absl::UnavailableError(absl::StrCat(path, ": no response from the daemon"));
  nlohmann::json resp = nlohmann::json::parse(line, nullptr, false);
  if (resp.is_discarded())
    return absl::InternalError(absl::StrCat(path, ": unparsable response: ", line));
  if (on_follow_line && resp.value("ok", false)) {
    if (on_response) on_response(resp);
    SetTimeout(fd, 0);  // follow: block until the daemon goes away or the callback says stop
    while (ReadLine(fd, &line, &rest)) {
      if (!on_follow_line(line)) return resp;
    }
    // The daemon ended the stream (it stopped, died, or dropped this reader): not a normal end.
    return absl::UnavailableError("the daemon closed the event stream (stopped?)");
  }
  return resp;
}

}  // namespace bw
