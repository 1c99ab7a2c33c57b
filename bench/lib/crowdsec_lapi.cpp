#include "bench/lib/crowdsec_lapi.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "bench/lib/bpfbench.hpp"
#include "bench/lib/sys.hpp"
#include "lib/crowdsec_files.hpp"
#include "maps/maps.hpp"

namespace bw::bench {
namespace {

absl::StatusOr<std::string> RandomKey() {
  std::ifstream f("/dev/urandom", std::ios::binary);
  std::string raw(16, '\0');
  if (!f.read(raw.data(), static_cast<std::streamsize>(raw.size())))
    return absl::InternalError("read /dev/urandom");
  return absl::BytesToHexString(raw);
}

// True when something accepts a TCP connection on 127.0.0.1:port inside `ns`.
bool Accepts(const std::string& ns, uint16_t port) {
  absl::Status st = InNetns(ns, [&]() -> absl::Status {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus("lapi probe", "socket", errno);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    int e = errno;
    close(fd);
    if (r != 0) return ErrnoStatus("lapi probe", "connect", e);
    return absl::OkStatus();
  });
  return st.ok();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CrowdsecLapi>> CrowdsecLapi::Start(const LapiOptions& o) {
  std::unique_ptr<CrowdsecLapi> l(new CrowdsecLapi());
  l->o_ = o;
  const std::string& d = o.dir;
  l->config_ = absl::StrCat(d, "/config.yaml");
  if (absl::Status st = test::WriteCrowdsecLapiFiles(d, o.port); !st.ok()) return st;
  // Registrations write the database directly: the API need not run yet.
  if (auto m = l->Cscli("machines add -a --force"); !m.ok()) return m.status();
  for (const std::string& b : o.bouncers) {
    auto k = RandomKey();
    if (!k.ok()) return k.status();
    if (auto a = l->Cscli(absl::StrCat("bouncers add ", b, " -k ", *k)); !a.ok()) return a.status();
    l->keys_[b] = *k;
  }
  l->proc_ = std::make_unique<ChildProc>("crowdsec (Local API)");
  if (absl::Status st = l->proc_->Start({o.crowdsec, "-c", l->config_, "-no-cs"}, o.netns,
                                        absl::StrCat(d, "/crowdsec.log"));
      !st.ok())
    return st;
  double t0 = l->proc_->started_at();
  for (;;) {
    if (Stopped()) return StoppedStatus();
    if (!l->proc_->Running())
      return absl::InternalError(absl::StrCat("crowdsec -no-cs exited; its log:\n", l->proc_->LogTail()));
    if (Accepts(o.netns, o.port)) break;
    if (MonotonicSeconds() - t0 > o.ready_timeout_s)
      return absl::DeadlineExceededError(absl::StrCat("crowdsec -no-cs not listening after ",
                                                      o.ready_timeout_s, " s; its log:\n",
                                                      l->proc_->LogTail()));
    usleep(50000);
  }
  l->ready_s_ = MonotonicSeconds() - t0;
  return l;
}

std::string CrowdsecLapi::url() const { return absl::StrCat("http://127.0.0.1:", o_.port, "/"); }

std::string CrowdsecLapi::key(const std::string& bouncer) const {
  auto it = keys_.find(bouncer);
  return it == keys_.end() ? "" : it->second;
}

absl::StatusOr<std::string> CrowdsecLapi::Cscli(const std::string& args) const {
  // One shell: nsenter then cscli, its stderr folded into the answer, and its exit status after
  // a marker, so that a failure can quote what cscli said.
  const std::string marker = "\n@@cscli-exit=";
  auto r = Sh(absl::StrCat(NsPrefix(o_.netns), o_.cscli, " -c ", config_, " ", args,
                           " 2>&1; echo \"", "@@cscli-exit=$?\""));
  if (!r.ok())
    return absl::Status(r.status().code(), absl::StrCat("cscli ", args, ": ", r.status().message()));
  std::string out = "\n" + *r;
  size_t m = out.rfind(marker);
  if (m == std::string::npos) return absl::InternalError(absl::StrCat("cscli ", args, ": no exit status"));
  std::string rc = out.substr(m + marker.size());
  while (!rc.empty() && (rc.back() == '\n' || rc.back() == ' ')) rc.pop_back();
  out = out.substr(1, m > 0 ? m - 1 : 0);
  if (rc != "0")
    return absl::InternalError(absl::StrCat("cscli ", args, " failed (exit ", rc, "): ",
                                            out.size() > 1500 ? out.substr(out.size() - 1500) : out));
  return out;
}

}  // namespace bw::bench
