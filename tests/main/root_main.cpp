// Test entry for suites that need root (BPF_PROG_TEST_RUN, bpffs pins, network namespaces).
// Not root: print why and exit 77, which CTest reports as skipped (SKIP_RETURN_CODE).
#define CATCH_CONFIG_RUNNER
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "daemon/dataplane/libbpf_log.hpp"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) listing = true;
  if (!listing && geteuid() != 0) {
    std::fprintf(stderr, "SKIP: %s needs root (BPF_PROG_TEST_RUN, bpffs, network namespaces)\n",
                 argv[0]);
    return 77;
  }
  bw::InstallLibbpfLog(std::getenv("BW_VERBOSE") != nullptr);
  return Catch::Session().run(argc, argv);
}
