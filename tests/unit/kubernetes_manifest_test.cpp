// packaging/kubernetes/bannerwatch.yaml: no cluster here and no kubeconform in Debian, so the
// manifest is parsed and held to what the Kubernetes API (apps/v1 DaemonSet, v1 ConfigMap) and the
// deployment need: the fields' shapes, the selector matching the template, the least-privilege
// security context (no `privileged`, exactly CAP_BPF CAP_NET_ADMIN CAP_PERFMON), host network,
// bpffs from the host, probes and resources, and a ConfigMap policy the daemon's own parser and
// compiler accept. tests/integration/container_test.cpp runs the container as this spec does.
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <vector>

#include "daemon/policy/policy.hpp"
#include "lib/netns.hpp"
#include "lib/topology.hpp"
#include "yaml-cpp/yaml.h"

namespace bw::test {
namespace {

const std::string kManifest = std::string(BW_SOURCE_DIR) + "/packaging/kubernetes/bannerwatch.yaml";

YAML::Node Doc(const std::vector<YAML::Node>& docs, const std::string& kind) {
  for (const YAML::Node& d : docs)
    if (d["kind"].as<std::string>() == kind) return d;
  FAIL("no " << kind << " in " << kManifest);
  return {};
}

std::set<std::string> Strings(const YAML::Node& seq) {
  std::set<std::string> s;
  for (const YAML::Node& n : seq) s.insert(n.as<std::string>());
  return s;
}

TEST_CASE("kubernetes manifest: every document is a well-formed object of a known kind") {
  const std::vector<YAML::Node> docs = YAML::LoadAllFromFile(kManifest);
  REQUIRE(docs.size() == 3);
  const std::set<std::pair<std::string, std::string>> known = {
      {"v1", "Namespace"}, {"v1", "ConfigMap"}, {"apps/v1", "DaemonSet"}};
  for (const YAML::Node& d : docs) {
    REQUIRE(d.IsMap());
    const std::string kind = d["kind"].as<std::string>();
    INFO(kind);
    CHECK(known.count({d["apiVersion"].as<std::string>(), kind}) == 1);
    // A DNS-1123 name, in the one namespace (the Namespace itself has none).
    const std::string name = d["metadata"]["name"].as<std::string>();
    CHECK(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos);
    if (kind != "Namespace") CHECK(d["metadata"]["namespace"].as<std::string>() == "bannerwatch");
  }
}

TEST_CASE("kubernetes manifest: the DaemonSet runs with host network, bpffs and only the "
          "capabilities bannerwatch needs") {
  const std::vector<YAML::Node> docs = YAML::LoadAllFromFile(kManifest);
  const YAML::Node ds = Doc(docs, "DaemonSet");
  const YAML::Node spec = ds["spec"];
  const YAML::Node pod = spec["template"]["spec"];
  // apps/v1: the selector is required and must match the template's labels.
  for (const auto& kv : spec["selector"]["matchLabels"])
    CHECK(spec["template"]["metadata"]["labels"][kv.first.as<std::string>()].as<std::string>() ==
          kv.second.as<std::string>());
  CHECK(pod["hostNetwork"].as<bool>());
  REQUIRE(pod["containers"].size() == 1);
  const YAML::Node c = pod["containers"][0];
  CHECK(!c["image"].as<std::string>().empty());

  const YAML::Node sc = c["securityContext"];
  CHECK(!sc["privileged"].as<bool>());
  CHECK(!sc["allowPrivilegeEscalation"].as<bool>());
  CHECK(sc["readOnlyRootFilesystem"].as<bool>());
  CHECK(Strings(sc["capabilities"]["add"]) == std::set<std::string>{"BPF", "NET_ADMIN", "PERFMON"});
  CHECK(Strings(sc["capabilities"]["drop"]) == std::set<std::string>{"ALL"});
  CHECK(sc["seccompProfile"]["type"].IsDefined());

  // Volumes: every mount names a volume; bpffs and the policy come from where they should.
  std::set<std::string> volumes;
  std::string bpffs_volume, policy_volume;
  for (const YAML::Node& v : pod["volumes"]) {
    const std::string name = v["name"].as<std::string>();
    volumes.insert(name);
    if (v["hostPath"] && v["hostPath"]["path"].as<std::string>() == "/sys/fs/bpf")
      bpffs_volume = name;
    if (v["configMap"]) {
      CHECK(v["configMap"]["name"].as<std::string>() ==
            Doc(docs, "ConfigMap")["metadata"]["name"].as<std::string>());
      policy_volume = name;
    }
  }
  std::set<std::string> mounted;
  for (const YAML::Node& m : c["volumeMounts"]) {
    const std::string name = m["name"].as<std::string>();
    CHECK(volumes.count(name) == 1);
    if (name == bpffs_volume) CHECK(m["mountPath"].as<std::string>() == "/sys/fs/bpf");
    if (name == policy_volume) CHECK(m["mountPath"].as<std::string>() == "/etc/bannerwatch");
    mounted.insert(m["mountPath"].as<std::string>());
  }
  CHECK(!bpffs_volume.empty());
  CHECK(!policy_volume.empty());
  // Read-only root: what the daemon writes is on volumes.
  CHECK(mounted.count("/var/lib/bannerwatch") == 1);
  CHECK(mounted.count("/run/bannerwatch") == 1);

  // EVE to stdout for the cluster's log pipeline, the policy from the ConfigMap's mount.
  const std::vector<std::string> args = c["args"].as<std::vector<std::string>>();
  REQUIRE(!args.empty());
  CHECK(args[0] == "run");
  auto has = [&](const std::string& a) { return std::find(args.begin(), args.end(), a) != args.end(); };
  CHECK(has("--eve-stdout"));
  CHECK(has("--no-eve-file"));
  CHECK(has("/etc/bannerwatch/policy.yaml"));

  // Probes and resources.
  CHECK(c["readinessProbe"]["exec"]["command"].as<std::vector<std::string>>().at(1) == "status");
  CHECK(c["livenessProbe"]["httpGet"]["path"].as<std::string>() == "/metrics");
  CHECK(c["resources"]["requests"]["cpu"].IsDefined());
  CHECK(c["resources"]["requests"]["memory"].IsDefined());
  CHECK(c["resources"]["limits"]["memory"].IsDefined());
}

TEST_CASE("kubernetes manifest: the ConfigMap's policy parses and compiles") {
  const std::vector<YAML::Node> docs = YAML::LoadAllFromFile(kManifest);
  const std::string text = Doc(docs, "ConfigMap")["data"]["policy.yaml"].as<std::string>();
  auto p = ParsePolicy(text, "/etc/bannerwatch/policy.yaml");
  INFO((p.ok() ? "" : std::string(p.status().message())));
  REQUIRE(p.ok());
  CHECK(p->keep_on_exit);  // pods take over from each other: see the manifest's comment
  CHECK(p->ports == std::vector<uint16_t>{443, 8443});
  auto c = Compile(*p);
  INFO((c.ok() ? "" : std::string(c.status().message())));
  CHECK(c.ok());
}

}  // namespace
}  // namespace bw::test
