#pragma once
// A name that is safe in file names, logs and config keys as it is: 1..max_length of
// [A-Za-z0-9._-] (ASCII only, whatever the locale). Export names, Ceph ids, device table names.
#include <algorithm>
#include <cstddef>
#include <string_view>

namespace ublkrdma {

inline bool is_plain_name(std::string_view name, size_t max_length) {
  if (name.empty() || name.size() > max_length) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

}  // namespace ublkrdma
