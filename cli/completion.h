#pragma once
// Shell completion, generated from the command line's own definition so that it cannot drift.
#include <CLI/CLI.hpp>
#include <string>

namespace ublkrdma::cli {

// A bash completion script for `app` (install as share/bash-completion/completions/ublk-rdma).
std::string bash_completion(const CLI::App& app);

}  // namespace ublkrdma::cli
