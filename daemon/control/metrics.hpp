// metrics.hpp — Prometheus text exposition over a minimal HTTP/1.0 responder.
//
// Contract: listens on host:port (default 127.0.0.1:9464; the daemon's config can change or turn
// it off). Any GET answers 200 with the text the render callback returns (exposition format
// 0.0.4); anything else 405. Served on the daemon's loop thread by a RequestServer
// (request_server.hpp): never blocking it, 2 s per connection, at most kMaxConnections open (one
// more gets 503), request heads up to kMaxRequestBytes (431 beyond). MetricsText helps build the
// body.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/control/request_server.hpp"

namespace bw {

inline constexpr const char* kMetricsListenDefault = "127.0.0.1:9464";

class MetricsServer {
 public:
  using Render = std::function<std::string()>;
  static constexpr size_t kMaxConnections = 16;
  static constexpr size_t kMaxRequestBytes = 8 * 1024;
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Listen(const std::string& host_port,
                                                              Render render);
  ~MetricsServer();
  // An epoll fd: when readable, call OnReadable().
  int fd() const { return server_->fd(); }
  uint16_t port() const { return port_; }
  void OnReadable() { server_->OnReadable(); }
  void ExpireDeadlines(absl::Time now) { server_->ExpireDeadlines(now); }
  const RequestServer& connections() const { return *server_; }

 private:
  MetricsServer() = default;
  RequestServer::Response Serve(std::string_view request) const;
  uint16_t port_ = 0;
  Render render_;
  std::unique_ptr<RequestServer> server_;
};

// Builds exposition text: one HELP/TYPE header per family, then samples.
class MetricsText {
 public:
  void Family(absl::string_view name, absl::string_view type, absl::string_view help);
  // labels: preformatted `a="x",b="y"` (values escaped by Label()) or empty.
  void Sample(absl::string_view name, absl::string_view labels, double value);
  void Sample(absl::string_view name, absl::string_view labels, uint64_t value);
  static std::string Label(absl::string_view key, absl::string_view value);
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

}  // namespace bw
