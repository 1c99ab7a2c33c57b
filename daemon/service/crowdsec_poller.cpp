#include "daemon/service/crowdsec_poller.hpp"

#include <curl/curl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"

namespace bw {
namespace {

// curl_global_init is not thread-safe before libcurl 7.84; once, before the first thread uses it.
void CurlInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  std::string body;
  bool too_big = false;
  const std::atomic<bool>* abort = nullptr;
};

size_t OnData(char* p, size_t size, size_t n, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  size_t len = size * n;
  if (t->body.size() + len > kMaxAnswerBytes) {
    t->too_big = true;
    return 0;  // curl ends the transfer with CURLE_WRITE_ERROR
  }
  t->body.append(p, len);
  return len;
}

// Called by curl at least once a second and on every bit of progress: a nonzero return aborts.
int OnProgress(void* arg, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<Transfer*>(arg)->abort->load() ? 1 : 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CrowdsecPoller>> CrowdsecPoller::Start(const CrowdsecSettings& s,
                                                                        const PrefixOptions& opts) {
  CurlInitOnce();
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return ErrnoStatus("crowdsec", "eventfd", errno);
  std::unique_ptr<CrowdsecPoller> p(new CrowdsecPoller(s, opts, Fd(efd)));
  p->thread_ = std::thread([raw = p.get()] { raw->Loop(); });
  return p;
}

CrowdsecPoller::~CrowdsecPoller() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  abort_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<CrowdsecPoller::Result> CrowdsecPoller::Take() {
  uint64_t n;
  (void)!::read(event_.get(), &n, sizeof(n));
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Result> out(std::make_move_iterator(done_.begin()),
                          std::make_move_iterator(done_.end()));
  done_.clear();
  return out;
}

void CrowdsecPoller::Loop() {
  bool startup = true;
  auto last_full = std::chrono::steady_clock::now();
  for (;;) {
    auto now = std::chrono::steady_clock::now();
    auto next = now + absl::ToChronoNanoseconds(settings_.poll);
    // The whole set every `resync` too: CrowdSec 1.4's deltas can miss decisions written while it
    // answers (50 of a 100 k bulk import polled every second were never sent as new).
    if (now - last_full >= absl::ToChronoNanoseconds(settings_.resync)) startup = true;
    if (startup) last_full = now;
    Result r = Poll(startup);
    // After a failure the API may have counted a delta as delivered that never arrived: ask for
    // the whole set again.
    startup = !r.error.ok();
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      done_.push_back(std::move(r));
    }
    uint64_t one = 1;
    (void)!::write(event_.get(), &one, sizeof(one));
    std::unique_lock<std::mutex> l(mu_);
    if (cv_.wait_until(l, next, [&] { return stop_; })) return;
  }
}

CrowdsecPoller::Result CrowdsecPoller::Poll(bool startup) {
  Result r;
  r.startup = startup;
  absl::Time t0 = absl::Now();
  std::string url = absl::StrCat(settings_.url, "v1/decisions/stream?startup=",
                                 startup ? "true" : "false", "&scopes=",
                                 settings_.scope_ip && settings_.scope_range ? "ip,range"
                                 : settings_.scope_ip                       ? "ip"
                                                                             : "range");
  Transfer t;
  t.abort = &abort_;
  CURL* c = curl_easy_init();
  if (!c) {
    r.error = absl::InternalError("curl_easy_init failed");
    return r;
  }
  std::string key_header = absl::StrCat("X-Api-Key: ", settings_.key);
  curl_slist* headers = curl_slist_append(nullptr, key_header.c_str());
  headers = curl_slist_append(headers, "Accept: application/json");
  char err[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "bannerwatch");
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // a thread: no SIGALRM for name lookups
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(settings_.timeout)));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(settings_.timeout)));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // gzip if the API offers it
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  r.bytes = t.body.size();
  std::string where = absl::StrCat("GET ", settings_.url, "v1/decisions/stream");
  if (t.too_big) {
    r.error = absl::ResourceExhaustedError(
        absl::StrCat(where, ": the answer is larger than ", kMaxAnswerBytes >> 20, " MiB"));
  } else if (rc != CURLE_OK) {
    r.error = absl::UnavailableError(
        absl::StrCat(where, ": ", err[0] ? err : curl_easy_strerror(rc)));
  } else if (status == 403 || status == 401) {
    r.error = absl::PermissionDeniedError(absl::StrCat(
        where, ": HTTP ", status, " (the API does not accept the bouncer key: `cscli bouncers list`)"));
  } else if (status != 200) {
    r.error = absl::UnavailableError(absl::StrCat(where, ": HTTP ", status));
  } else {
    DecisionScopes scopes{settings_.scope_ip, settings_.scope_range};
    auto parsed = ParseDecisionStream(t.body, scopes, opts_);
    if (parsed.ok())
      r.stream = std::move(*parsed);
    else
      r.error = absl::InvalidArgumentError(absl::StrCat(where, ": ", parsed.status().message()));
  }
  r.at = absl::Now();
  r.took = r.at - t0;
  return r;
}

}  // namespace bw
