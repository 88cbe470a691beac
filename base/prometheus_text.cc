#include "base/prometheus_text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ublkrdma::prom {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool name_char(char c, bool first, bool colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (colon && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

const char* type_name(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, true)) return false;
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, false)) return false;
  return true;
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers that a double holds exactly print without an exponent or a fraction.
  if (v == std::floor(v) && std::fabs(v) <= 9007199254740992.0) return fmt::format("{}", int64_t(v));
  return fmt::format("{}", v);  // the shortest text that reads back as the same double
}

std::string format_value(uint64_t v) { return fmt::format("{}", v); }

void TextWriter::declare(std::string_view name, MetricType type, std::string_view help) {
  if (!valid_metric_name(name)) throw NamingError(fmt::format("invalid metric name '{}'", name));
  const bool total = ends_with(name, "_total");
  if (type == MetricType::kCounter && !total) throw NamingError(fmt::format("counter '{}' must end in _total", name));
  if (type != MetricType::kCounter && total)
    throw NamingError(fmt::format("'{}' ends in _total but is not a counter", name));
  if (type == MetricType::kHistogram &&
      (ends_with(name, "_bucket") || ends_with(name, "_count") || ends_with(name, "_sum")))
    throw NamingError(fmt::format("histogram '{}' ends in a suffix of its own series", name));
  for (const Family& f : families_) {
    if (f.name != name) continue;
    if (f.type != type || f.help != help)
      throw NamingError(fmt::format("metric '{}' declared twice, differently", name));
    return;
  }
  families_.push_back(Family{std::string(name), type, std::string(help), {}});
}

TextWriter::Family& TextWriter::family(std::string_view name) {
  auto it = std::find_if(families_.begin(), families_.end(), [&](const Family& f) { return f.name == name; });
  if (it == families_.end()) throw NamingError(fmt::format("metric '{}' was not declared", name));
  return *it;
}

std::string TextWriter::series(std::string_view name, const Labels& labels, const std::string* le) {
  std::string s(name);
  if (labels.empty() && !le) return s;
  s += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!valid_label_name(k) || k == "le") throw NamingError(fmt::format("invalid label name '{}' on '{}'", k, name));
    s += fmt::format("{}{}=\"{}\"", first ? "" : ",", k, escape_label_value(v));
    first = false;
  }
  if (le) s += fmt::format("{}le=\"{}\"", first ? "" : ",", *le);
  s += '}';
  return s;
}

void TextWriter::sample(std::string_view name, const Labels& labels, double value) {
  Family& f = family(name);
  if (f.type == MetricType::kHistogram) throw NamingError(fmt::format("'{}' is a histogram", name));
  f.lines.push_back(series(name, labels) + " " + format_value(value) + "\n");
}

void TextWriter::sample(std::string_view name, const Labels& labels, uint64_t value) {
  Family& f = family(name);
  if (f.type == MetricType::kHistogram) throw NamingError(fmt::format("'{}' is a histogram", name));
  f.lines.push_back(series(name, labels) + " " + format_value(value) + "\n");
}

void TextWriter::histogram(std::string_view name, const Labels& labels, std::span<const double> upper_bounds,
                           std::span<const uint64_t> counts, double sum) {
  Family& f = family(name);
  if (f.type != MetricType::kHistogram) throw NamingError(fmt::format("'{}' is not a histogram", name));
  if (counts.size() != upper_bounds.size() + 1)
    throw std::invalid_argument(fmt::format("histogram '{}': {} counts for {} bounds", name, counts.size(),
                                            upper_bounds.size()));
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    const std::string le = i < upper_bounds.size() ? format_value(upper_bounds[i]) : "+Inf";
    f.lines.push_back(series(bucket, labels, &le) + " " + format_value(cumulative) + "\n");
  }
  f.lines.push_back(series(std::string(name) + "_sum", labels) + " " + format_value(sum) + "\n");
  f.lines.push_back(series(std::string(name) + "_count", labels) + " " + format_value(cumulative) + "\n");
}

std::string TextWriter::text() const {
  std::string out;
  for (const Family& f : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, escape_help(f.help), f.name, type_name(f.type));
    for (const std::string& l : f.lines) out += l;
  }
  return out;
}

}  // namespace ublkrdma::prom
