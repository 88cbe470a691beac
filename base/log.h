#pragma once
// Named loggers: ctrl, ublk.io, rdma, rdma.cq, server, target, cli. Levels switchable at run
// time (UBLK_RDMA_LOG="info" or "rdma=debug,ublk.io=trace"). IO-path statements use the
// SPDLOG_LOGGER_* macros so they compile out below UBLK_RDMA_IO_LOG_LEVEL.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

namespace ublkrdma::log {

// Returns the named logger, creating it (stderr sink, shared format) on first use.
std::shared_ptr<spdlog::logger> get(std::string_view name);

// Applies a level spec like "info" or "warn,rdma=debug". Unknown names are created.
void apply_levels(std::string_view spec);

// Sends every logger to `path` (append) instead of stderr; used by daemons after detaching.
void redirect_to_file(const std::string& path);

// A string from a peer or a file, fit for a log line: printable ASCII stays, everything else
// (newlines, terminal escapes, bytes >= 0x7f) becomes \xNN and a backslash \\, so that what a
// peer sends can never forge a line or drive a terminal. At most `max` input bytes ("..." after).
std::string escaped(std::string_view s, size_t max = 128);

inline spdlog::logger* ctrl() { static auto l = get("ctrl"); return l.get(); }
inline spdlog::logger* ublk_io() { static auto l = get("ublk.io"); return l.get(); }
inline spdlog::logger* rdma() { static auto l = get("rdma"); return l.get(); }
inline spdlog::logger* rdma_cq() { static auto l = get("rdma.cq"); return l.get(); }
inline spdlog::logger* server() { static auto l = get("server"); return l.get(); }
inline spdlog::logger* target() { static auto l = get("target"); return l.get(); }
inline spdlog::logger* cli() { static auto l = get("cli"); return l.get(); }

}  // namespace ublkrdma::log
