// suricata_schema.hpp — the rules of Suricata 7's EVE schema (etc/schema.json), as facts, to
// check real bannerwatch records against (eve.schema: suricata-7).
//
// Contract: SuricataSchemaErrors lists what a JSON Schema validator would refuse in one record
// under the rules written down in suricata_schema.cpp (its allowed top-level properties, the
// types of the standard fields, alert's, alert.metadata's and tcp's properties and the timestamp
// pattern); empty: the record validates. The facts name their source and Suricata version.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bw::test {

std::vector<std::string> SuricataSchemaErrors(const nlohmann::json& record);

}  // namespace bw::test
