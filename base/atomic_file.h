#pragma once
// Replacing a file's whole content so that a reader sees the old text or the new, never a part:
// written to PATH.tmp, then renamed over PATH. node_exporter's textfile collector asks for this
// (it reads only *.prom, so the temporary file is never scraped), and scripts that poll a stats
// file rely on it.
#include <string>
#include <string_view>

namespace ublkrdma {

// Throws SetupError with the path and errno if the file cannot be written or renamed.
void write_file_atomically(const std::string& path, std::string_view text);

}  // namespace ublkrdma
