#include "daemon/control/metrics.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "maps/maps.hpp"

namespace bw {

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Listen(const std::string& host_port,
                                                                    Render render) {
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat("metrics listen '", host_port, "': want host:port"));
  std::string host = host_port.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(host_port.substr(colon + 1), &port) || port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("metrics listen '", host_port, "': bad port"));

  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->render_ = std::move(render);
  sockaddr_storage ss{};
  socklen_t len;
  int family;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    family = v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    family = v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("metrics listen '", host_port, "': bad address"));
  }
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoStatus(host_port, "socket", errno);
  Fd listening(fd);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return ErrnoStatus(host_port, "bind", errno);
  if (::listen(fd, 64) != 0) return ErrnoStatus(host_port, "listen", errno);
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  s->port_ = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                     : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  RequestServer::Options o;
  o.name = absl::StrCat("metrics ", host_port);
  o.max_connections = kMaxConnections;
  o.max_request_bytes = kMaxRequestBytes;
  o.deadline = absl::Seconds(2);
  o.busy_response =
      "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  o.too_large_response =
      "HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: "
      "close\r\n\r\n";
  const MetricsServer* self = s.get();
  s->server_ = std::make_unique<RequestServer>(
      listening.release(), std::move(o),
      [](std::string_view in, bool eof) -> size_t {
        // The request head ends at an empty line; what follows (a body) is not read.
        size_t end = in.find("\r\n\r\n");
        if (end != std::string_view::npos) return end + 4;
        end = in.find("\n\n");
        if (end != std::string_view::npos) return end + 2;
        return eof && !in.empty() ? in.size() : std::string_view::npos;
      },
      [self](std::string_view request) { return self->Serve(request); });
  return s;
}

MetricsServer::~MetricsServer() = default;

RequestServer::Response MetricsServer::Serve(std::string_view request) const {
  if (request.substr(0, 4) != "GET ")
    return {"HTTP/1.0 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"};
  std::string body = render_();
  return {absl::StrCat("HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n",
                       "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body)};
}

void MetricsText::Family(absl::string_view name, absl::string_view type, absl::string_view help) {
  absl::StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void MetricsText::Sample(absl::string_view name, absl::string_view labels, double value) {
  absl::StrAppend(&out_, name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}", " ",
                  absl::StrFormat("%.17g", value), "\n");
}

void MetricsText::Sample(absl::string_view name, absl::string_view labels, uint64_t value) {
  absl::StrAppend(&out_, name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}", " ",
                  value, "\n");
}

std::string MetricsText::Label(absl::string_view key, absl::string_view value) {
  std::string v;
  for (char ch : value) {
    if (ch == '\\' || ch == '"') v.push_back('\\');
    if (ch == '\n') {
      v += "\\n";
      continue;
    }
    v.push_back(ch);
  }
  return absl::StrCat(key, "=\"", v, "\"");
}

}  // namespace bw
