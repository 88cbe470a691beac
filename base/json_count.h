#pragma once
// Counters read back from a stats JSON document (the metrics exporters' input): a missing,
// negative or non-numeric field counts as 0.
#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

namespace ublkrdma {

inline uint64_t json_count(const nlohmann::json& j, std::string_view key) {
  auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) return uint64_t(std::max<int64_t>(0, it->get<int64_t>()));
  return 0;
}

// A counter of a stats JSON object exported as a metric: its JSON key, metric name and help.
struct JsonCounter {
  const char* key;
  const char* name;
  const char* help;
};

}  // namespace ublkrdma
