// crowdsec_files.hpp — the files of a private CrowdSec Local API (Debian's crowdsec 1.4, run as
// `crowdsec -c DIR/config.yaml -no-cs`: the API alone, no agent, no Central API, no metrics), for
// the tests (lib/crowdsec_lapi.hpp) and the benchmark (bench/lib/crowdsec_lapi.hpp) alike.
//
// Contract: writes under `dir` (created if missing) a configuration listening on 127.0.0.1:`port`
// with its own SQLite database, the package's profiles, simulation off, and an empty credentials
// file for cscli's machine (`cscli -c DIR/config.yaml machines add --auto` fills it). Nothing
// outside `dir` is written; the package's hub is read from /var/lib/crowdsec/hub.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace bw::test {

absl::Status WriteCrowdsecLapiFiles(const std::string& dir, int port);

}  // namespace bw::test
