#include "base/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <algorithm>
#include <mutex>
#include <string>

namespace ublkrdma::log {
namespace {

std::mutex g_mu;
spdlog::sink_ptr g_sink;
spdlog::level::level_enum g_default = spdlog::level::info;

spdlog::sink_ptr sink_locked() {
  if (!g_sink) g_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return g_sink;
}

}  // namespace

std::shared_ptr<spdlog::logger> get(std::string_view name) {
  std::lock_guard lk(g_mu);
  if (auto l = spdlog::get(std::string(name))) return l;
  auto l = std::make_shared<spdlog::logger>(std::string(name), sink_locked());
  l->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%^%l%$] %v");
  l->set_level(g_default);
  spdlog::register_logger(l);
  return l;
}

void apply_levels(std::string_view spec) {
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string_view::npos) end = spec.size();
    std::string_view item = spec.substr(pos, end - pos);
    if (!item.empty()) {
      size_t eq = item.find('=');
      if (eq == std::string_view::npos) {
        auto lvl = spdlog::level::from_str(std::string(item));
        {
          std::lock_guard lk(g_mu);
          g_default = lvl;
        }
        spdlog::apply_all([lvl](const std::shared_ptr<spdlog::logger>& l) { l->set_level(lvl); });
      } else {
        get(item.substr(0, eq))->set_level(spdlog::level::from_str(std::string(item.substr(eq + 1))));
      }
    }
    pos = end + 1;
  }
}

void redirect_to_file(const std::string& path) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false);
  std::lock_guard lk(g_mu);
  g_sink = sink;
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) {
    l->sinks().clear();
    l->sinks().push_back(sink);
  });
}

std::string escaped(std::string_view s, size_t max) {
  std::string out;
  out.reserve(std::min(s.size(), max) + 8);
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace ublkrdma::log
