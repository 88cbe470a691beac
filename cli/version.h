#pragma once
// What `--version` and `features --json` say of this build.
#include <string>

namespace ublkrdma::cli {

std::string git_commit();    // "abcdef012345", "...-dirty" or "unknown"
std::string version_text();  // "0.1.0 (git abcdef012345)"

}  // namespace ublkrdma::cli
