#include "lib/crowdsec_files.hpp"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace bw::test {
namespace {

absl::Status Write(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteCrowdsecLapiFiles(const std::string& dir, int port) {
  std::error_code ec;
  std::filesystem::create_directories(dir + "/data", ec);
  if (!ec) std::filesystem::create_directories(dir + "/notifications", ec);
  if (!ec)
    std::filesystem::copy_file("/etc/crowdsec/profiles.yaml", dir + "/profiles.yaml",
                               std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir, ": ", ec.message()));
  for (auto [name, text] : {std::pair<const char*, std::string>{"simulation.yaml", "simulation: off\n"},
                            {"lapi-credentials.yaml", ""}})
    if (absl::Status st = Write(absl::StrCat(dir, "/", name), text); !st.ok()) return st;
  return Write(absl::StrCat(dir, "/config.yaml"), absl::StrCat(
      "common: {daemonize: false, log_media: stdout, log_level: info, working_dir: ", dir, "}\n",
      "config_paths:\n",
      "  config_dir: ", dir, "/\n",
      "  data_dir: ", dir, "/data/\n",
      "  simulation_path: ", dir, "/simulation.yaml\n",
      "  hub_dir: /var/lib/crowdsec/hub/\n",
      "  index_path: /var/lib/crowdsec/hub/.index.json\n",
      "  notification_dir: ", dir, "/notifications/\n",
      "  plugin_dir: /usr/lib/crowdsec/plugins/\n",
      "cscli: {output: human, color: no}\n",
      "db_config: {log_level: info, type: sqlite, db_path: ", dir, "/data/crowdsec.db, use_wal: true}\n",
      "api:\n",
      "  client: {credentials_path: ", dir, "/lapi-credentials.yaml}\n",
      "  server: {log_level: info, listen_uri: 127.0.0.1:", port, ", profiles_path: ", dir,
      "/profiles.yaml, trusted_ips: [127.0.0.1]}\n",
      "prometheus: {enabled: false}\n"));
}

}  // namespace bw::test
