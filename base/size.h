#pragma once
// Byte sizes as users write them: "4G", "512M", "64k", "1048576", "1T", "2GiB", "4KB".
// Units are binary (K = 1024) and case-insensitive, optionally followed by "iB" or "B";
// a bare "B" suffix means bytes. No sign, no fraction, no spaces, no hex.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/errors.h"

namespace ublkrdma {

// The value, or -EINVAL (empty, garbage, sign, fraction, unknown unit) / -ERANGE (overflow).
Result<uint64_t> parse_size(std::string_view text);

// As parse_size, but throws SetupError "invalid <what> 'text': <reason>" (for CLI and specs).
uint64_t parse_size_or_throw(std::string_view text, std::string_view what);

// The shortest exact form in the largest binary unit that divides the value: 4294967296 ->
// "4G", 1536 -> "1536", 0 -> "0". parse_size(format_size(x)) == x for every x.
std::string format_size(uint64_t bytes);

}  // namespace ublkrdma
