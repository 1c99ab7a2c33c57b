#include "lib/suricata_schema.hpp"

#include <map>
#include <regex>
#include <set>

namespace bw::test {
namespace {

using nlohmann::json;

// ---- Suricata 7's etc/schema.json, as facts ------------------------------------------------------
// From OISF/suricata etc/schema.json at commit 0d3cfbbe3f73 (the 7.0 series: it has the 7.0
// additions bittorrent_dht, frame, pgsql, quic, "direction" and "pcap_filename", and none of 8.0's
// ldap/websocket/arp). The document sets "additionalProperties": false on the top level, on
// "alert", on "alert.metadata" and on "tcp". Types are JSON Schema's; "optional" is not a JSON
// Schema keyword, so no property is required.
enum class T { kString, kInteger, kNumber, kBoolean, kArray, kObject };

// Every top-level property the schema declares.
const std::map<std::string, T> kTopLevel = {
    {"app_proto", T::kString}, {"app_proto_expected", T::kString}, {"app_proto_orig", T::kString},
    {"app_proto_tc", T::kString}, {"app_proto_ts", T::kString}, {"capture_file", T::kString},
    {"community_id", T::kString}, {"dest_ip", T::kString}, {"dest_port", T::kInteger},
    {"event_type", T::kString}, {"flow_id", T::kInteger}, {"icmp_code", T::kInteger},
    {"icmp_type", T::kInteger}, {"log_level", T::kString}, {"packet", T::kString},
    {"parent_id", T::kInteger}, {"payload", T::kString}, {"payload_printable", T::kString},
    {"pcap_cnt", T::kInteger}, {"pcap_filename", T::kString}, {"pkt_src", T::kString},
    {"proto", T::kString}, {"response_icmp_code", T::kInteger}, {"response_icmp_type", T::kInteger},
    {"spi", T::kInteger}, {"src_ip", T::kString}, {"src_port", T::kInteger}, {"stream", T::kInteger},
    {"timestamp", T::kString}, {"direction", T::kString}, {"tx_id", T::kInteger},
    {"files", T::kArray}, {"vlan", T::kArray},
    {"alert", T::kObject}, {"anomaly", T::kObject}, {"bittorrent_dht", T::kObject},
    {"dcerpc", T::kObject}, {"dhcp", T::kObject}, {"dnp3", T::kObject}, {"dns", T::kObject},
    {"drop", T::kObject}, {"email", T::kObject}, {"engine", T::kObject}, {"ether", T::kObject},
    {"fileinfo", T::kObject}, {"flow", T::kObject}, {"frame", T::kObject}, {"ftp", T::kObject},
    {"ftp_data", T::kObject}, {"http", T::kObject}, {"http2", T::kObject}, {"ike", T::kObject},
    {"krb5", T::kObject}, {"metadata", T::kObject}, {"modbus", T::kObject}, {"mqtt", T::kObject},
    {"netflow", T::kObject}, {"nfs", T::kObject}, {"packet_info", T::kObject},
    {"pgsql", T::kObject}, {"quic", T::kObject}, {"rdp", T::kObject}, {"rfb", T::kObject},
    {"rpc", T::kObject}, {"sip", T::kObject}, {"smb", T::kObject}, {"smtp", T::kObject},
    {"snmp", T::kObject}, {"ssh", T::kObject}, {"stats", T::kObject}, {"tcp", T::kObject},
    {"template", T::kObject}, {"tftp", T::kObject}, {"tls", T::kObject}, {"traffic", T::kObject},
    {"tunnel", T::kObject},
};
// "alert"'s properties.
const std::map<std::string, T> kAlert = {
    {"action", T::kString}, {"category", T::kString}, {"gid", T::kInteger}, {"rev", T::kInteger},
    {"rule", T::kString}, {"severity", T::kInteger}, {"signature", T::kString},
    {"signature_id", T::kInteger}, {"xff", T::kString}, {"metadata", T::kObject},
    {"source", T::kObject}, {"target", T::kObject},
};
// "alert.metadata"'s properties: each an array of strings.
const std::set<std::string> kAlertMetadata = {
    "affected_product", "attack_target", "created_at", "deployment", "former_category",
    "malware_family", "policy", "signature_severity", "tag", "updated_at",
};
// "tcp"'s properties.
const std::map<std::string, T> kTcp = {
    {"ack", T::kBoolean}, {"cwr", T::kBoolean}, {"ecn", T::kBoolean}, {"fin", T::kBoolean},
    {"psh", T::kBoolean}, {"rst", T::kBoolean}, {"state", T::kString}, {"syn", T::kBoolean},
    {"tc_gap", T::kBoolean}, {"tcp_flags", T::kString}, {"tcp_flags_tc", T::kString},
    {"tcp_flags_ts", T::kString}, {"ts_gap", T::kBoolean}, {"urg", T::kBoolean},
};
// "timestamp"'s pattern.
const std::regex kTimestamp(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+[+\-]\d+$)");

bool HasType(const json& v, T t) {
  switch (t) {
    case T::kString: return v.is_string();
    case T::kInteger: return v.is_number_integer();
    case T::kNumber: return v.is_number();
    case T::kBoolean: return v.is_boolean();
    case T::kArray: return v.is_array();
    case T::kObject: return v.is_object();
  }
  return false;
}

}  // namespace

// The schema's errors for one record (empty: valid), as a validator would list them.
std::vector<std::string> SuricataSchemaErrors(const json& j) {
  std::vector<std::string> err;
  auto props = [&](const json& obj, const std::map<std::string, T>& allowed, const std::string& at) {
    for (const auto& [k, v] : obj.items()) {
      auto it = allowed.find(k);
      if (it == allowed.end()) {
        err.push_back(at + ": additional property '" + k + "'");
      } else if (!HasType(v, it->second)) {
        err.push_back(at + k + ": wrong type");
      }
    }
  };
  if (!j.is_object()) return {"not an object"};
  props(j, kTopLevel, "");
  if (j.contains("timestamp") && j["timestamp"].is_string() &&
      !std::regex_match(j["timestamp"].get<std::string>(), kTimestamp))
    err.push_back("timestamp: pattern");
  if (j.contains("alert") && j["alert"].is_object()) {
    props(j["alert"], kAlert, "alert.");
    const json& a = j["alert"];
    if (a.contains("metadata") && a["metadata"].is_object()) {
      for (const auto& [k, v] : a["metadata"].items()) {
        if (!kAlertMetadata.count(k)) err.push_back("alert.metadata: additional property '" + k + "'");
        if (!v.is_array()) {
          err.push_back("alert.metadata." + k + ": not an array");
          continue;
        }
        for (const json& s : v)
          if (!s.is_string()) err.push_back("alert.metadata." + k + ": an item not a string");
      }
    }
  }
  if (j.contains("tcp") && j["tcp"].is_object()) props(j["tcp"], kTcp, "tcp.");
  return err;
}

}  // namespace bw::test
