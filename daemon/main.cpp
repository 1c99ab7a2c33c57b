// bannerwatch — command-line entry point.
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0) {
    std::fprintf(stderr, "usage: bannerwatch <run|detach|status> ...\n");
    return 2;
  }
  std::fprintf(stderr, "bannerwatch: unknown command '%s'\n", argv[1]);
  return 2;
}
