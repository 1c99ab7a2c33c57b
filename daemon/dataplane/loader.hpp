// loader.hpp — owns the loaded data plane (the bannerwatch skeleton).
//
// Contract: Load() probes the kernel (kernel_probe.hpp) and opens the object variant it allows
// (or the one asked for), sizes its maps, reuses maps already pinned under the pin root (adoption:
// a restarted daemon keeps the same watchlists, flows, counters and the events buffered meanwhile)
// or creates and pins them there, and loads both programs. The pin root is created with mode 0700.
// A load the verifier refuses is reported as such: the program, the kernel, the variant and the
// last lines of the verifier's log (all of it on stderr when libbpf's log is verbose). Destroying
// a DataPlane closes its fds; it never unpins: Unpin() does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "daemon/dataplane/kernel_probe.hpp"
#include "maps/maps.hpp"

struct bannerwatch;  // the generated skeleton
struct bpf_object_open_opts;
struct bpf_program;

namespace bw {

struct LoadOptions {
  // Empty: a trial load (`check`) whose maps are the process's own, nothing pinned or adopted.
  std::string pin_root = BW_PIN_ROOT_DEFAULT;
  uint32_t v4_entries = BW_V4_ENTRIES_DEFAULT;
  uint32_t v6_entries = BW_V6_ENTRIES_DEFAULT;
  uint32_t flows = BW_FLOWS_DEFAULT;
  uint32_t events_bytes = BW_EVENTS_BYTES_DEFAULT;
  // kAuto: the best variant the kernel allows. kFull on a kernel without its helpers fails to load.
  Variant variant = Variant::kAuto;
  // Tests only: an ELF object opened through the skeleton instead of the variant's (it must have
  // the same maps, programs and globals).
  absl::Span<const uint8_t> object_override;
};

struct ProgramInfo {
  std::string name;
  uint32_t verified_insns = 0;  // instructions the verifier processed (0: kernel before 5.16)
  uint32_t xlated_bytes = 0, jited_bytes = 0;
};

// A loaded program as the kernel reports it.
ProgramInfo InfoOfProgram(const bpf_program* p);

class DataPlane {
 public:
  static absl::StatusOr<std::unique_ptr<DataPlane>> Load(const LoadOptions& opts);
  ~DataPlane();
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  const std::string& pin_root() const { return pin_root_; }
  int xdp_fd() const;
  int tc_fd() const;
  int events_fd() const;
  // Capacities (max_entries) the tries were loaded or adopted with.
  uint32_t v4_capacity() const;
  uint32_t v6_capacity() const;
  // True when the maps were found pinned (a previous daemon's) rather than created.
  bool adopted() const { return adopted_; }
  // The object variant loaded, its enum bw_feature bits, and what the kernel was found to support.
  Variant variant() const { return variant_; }
  uint32_t features() const { return VariantFeatures(variant_); }
  const KernelSupport& kernel() const { return kernel_; }
  // Both programs, as the kernel reports them.
  std::vector<ProgramInfo> Programs() const;
  // Fresh fds (dup) for every map.
  absl::StatusOr<MapSet> Maps() const;
  bannerwatch* skel() { return skel_; }

  // Removes every map pin and the pin root (if then empty). Links are the attach module's.
  absl::Status UnpinMaps();

 private:
  DataPlane() = default;
  bannerwatch* skel_ = nullptr;
  std::string pin_root_;
  bool adopted_ = false;
  Variant variant_ = Variant::kFull;
  KernelSupport kernel_;
};

// Opens (does not load) variant v of the data-plane object through the skeleton; `override_elf`,
// when not empty, is opened instead (tests). nullptr with errno set on failure.
bannerwatch* OpenVariant(Variant v, absl::Span<const uint8_t> override_elf,
                         const struct bpf_object_open_opts* oo);

// The names of the data plane's maps, as pinned under a pin root (from the object itself).
std::vector<std::string> DataPlaneMapNames();

// Creates `dir` with mode 0700 if missing (*created says so); checks that it lives on bpffs.
absl::Status EnsurePinRoot(const std::string& dir, bool* created = nullptr);

}  // namespace bw
