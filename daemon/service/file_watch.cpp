#include "daemon/service/file_watch.hpp"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace bw {

absl::StatusOr<FileWatch> FileWatch::Create() {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return ErrnoStatus("inotify", "inotify_init1", errno);
  FileWatch w;
  w.fd_ = Fd(fd);
  return w;
}

void FileWatch::Watch(const std::vector<std::string>& files) {
  std::set<std::string> dirs;
  files_.clear();
  for (const std::string& f : files) {
    std::error_code ec;
    std::string abs = std::filesystem::absolute(f, ec).lexically_normal().string();
    files_.insert(abs);
    dirs.insert(std::filesystem::path(abs).parent_path().string());
    // A symlink's target too (operators link a list to a feed's current file): a write or a
    // rename there is the list's change, and the link's directory sees nothing of it.
    std::string target = std::filesystem::canonical(abs, ec).string();
    if (!ec && target != abs) {
      files_.insert(target);
      dirs.insert(std::filesystem::path(target).parent_path().string());
    }
  }
  for (auto it = dirs_.begin(); it != dirs_.end();) {
    if (!dirs.count(it->second)) {
      inotify_rm_watch(fd_.get(), it->first);
      it = dirs_.erase(it);
    } else {
      dirs.erase(it->second);
      ++it;
    }
  }
  for (const std::string& d : dirs) {
    int wd = inotify_add_watch(fd_.get(), d.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO);
    if (wd >= 0) dirs_[wd] = d;
  }
}

void FileWatch::OnReadable() {
  alignas(inotify_event) char buf[8192];
  ssize_t n;
  while ((n = ::read(fd_.get(), buf, sizeof(buf))) > 0) {
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      auto it = dirs_.find(ev->wd);
      if (it != dirs_.end() && ev->len > 0) {
        std::string path = (std::filesystem::path(it->second) / ev->name).string();
        if (files_.count(path)) due_ = absl::Now() + absl::Milliseconds(200);
      }
      p += sizeof(inotify_event) + ev->len;
    }
  }
}

bool FileWatch::TakeDue(absl::Time now) {
  if (now < due_) return false;
  due_ = absl::InfiniteFuture();
  return true;
}

}  // namespace bw
