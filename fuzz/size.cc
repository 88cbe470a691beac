// Sizes as users write them (base/size.h): parse_size agrees with the grammar written out here
// (digits, then an optional binary unit K..E with "B" or "iB", case-insensitive, or a bare "B";
// -ERANGE past 64 bits, -EINVAL for anything else), and parse_size(format_size(x)) == x for the
// value parsed and for the input's first 8 bytes as a number.
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include "base/size.h"
#include "fuzz/fuzz_check.h"

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

// 0 and the value, or -EINVAL / -ERANGE.
int expected(std::string_view text, uint64_t& value) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return -EINVAL;
  std::string suffix = lower(text.substr(digits));
  unsigned shift = 0;
  if (!suffix.empty() && suffix != "b") {
    size_t unit = std::string_view("kmgtpe").find(suffix[0]);
    std::string rest = suffix.substr(1);
    if (unit == std::string_view::npos || !(rest.empty() || rest == "b" || rest == "ib")) return -EINVAL;
    shift = 10 * unsigned(unit + 1);
  }
  unsigned __int128 v = 0;
  bool big = false;
  for (size_t i = 0; i < digits; ++i) {
    v = v * 10 + unsigned(text[i] - '0');
    if (v > UINT64_MAX) {
      big = true;
      v = static_cast<unsigned __int128>(UINT64_MAX) + 1;  // stays past the range, however many digits follow
    }
  }
  v <<= shift;
  if (big || v > UINT64_MAX) return -ERANGE;
  value = uint64_t(v);
  return 0;
}

void check_format(uint64_t x) {
  auto back = ublkrdma::parse_size(ublkrdma::format_size(x));
  FUZZ_CHECK(back.ok() && back.value() == x);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  uint64_t want = 0;
  int err = expected(text, want);
  auto got = ublkrdma::parse_size(text);
  FUZZ_CHECK(got.error() == err);
  if (got.ok()) {
    FUZZ_CHECK(got.value() == want);
    check_format(got.value());
  }
  if (size >= 8) {
    uint64_t x;
    std::memcpy(&x, data, 8);
    check_format(x);
  }
  return 0;
}
