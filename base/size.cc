#include "base/size.h"

#include <fmt/format.h>

#include <array>
#include <cerrno>

namespace ublkrdma {
namespace {

struct Unit {
  char letter;
  unsigned shift;
};
constexpr std::array<Unit, 6> kUnits{{{'K', 10}, {'M', 20}, {'G', 30}, {'T', 40}, {'P', 50}, {'E', 60}}};

char upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }

// Splits "64KiB" into digits "64" and suffix "KiB"; returns the shift of the suffix, -1 if unknown.
int suffix_shift(std::string_view suffix) {
  if (suffix.empty() || suffix == "B" || suffix == "b") return 0;
  unsigned shift = 0;
  bool found = false;
  for (const Unit& u : kUnits) {
    if (upper(suffix[0]) == u.letter) {
      shift = u.shift;
      found = true;
    }
  }
  if (!found) return -1;
  std::string_view rest = suffix.substr(1);
  if (rest.empty() || rest == "B" || rest == "b" || rest == "iB" || rest == "ib" || rest == "IB" || rest == "Ib")
    return int(shift);
  return -1;
}

const char* reason(int err) {
  return err == -ERANGE ? "too large (does not fit in 64 bits)"
                        : "expected a whole number of bytes with an optional binary unit K, M, G, T, P or E "
                          "(e.g. 512M, 4G, 4GiB, 1048576)";
}

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return Result<uint64_t>::error(-EINVAL);
  int shift = suffix_shift(text.substr(digits));
  if (shift < 0) return Result<uint64_t>::error(-EINVAL);

  uint64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    uint64_t d = uint64_t(text[i] - '0');
    if (value > (UINT64_MAX - d) / 10) return Result<uint64_t>::error(-ERANGE);
    value = value * 10 + d;
  }
  if (shift > 0 && value > (UINT64_MAX >> shift)) return Result<uint64_t>::error(-ERANGE);
  return value << shift;
}

uint64_t parse_size_or_throw(std::string_view text, std::string_view what) {
  Result<uint64_t> r = parse_size(text);
  if (!r) throw SetupError(fmt::format("invalid {} '{}': {}", what, text, reason(r.error())), -r.error());
  return r.value();
}

std::string format_size(uint64_t bytes) {
  if (bytes == 0) return "0";
  for (auto it = kUnits.rbegin(); it != kUnits.rend(); ++it) {
    uint64_t mask = (uint64_t(1) << it->shift) - 1;
    if ((bytes & mask) == 0) return fmt::format("{}{}", bytes >> it->shift, it->letter);
  }
  return fmt::format("{}", bytes);
}

}  // namespace ublkrdma
