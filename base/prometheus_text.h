#pragma once
// Metrics in the Prometheus text exposition format (version 0.0.4), as node_exporter's textfile
// collector reads them. Pure formatting, no I/O: callers add families and their samples in any
// order (e.g. device by device, queue by queue) and text() writes each family's HELP and TYPE
// lines followed by all of its samples, since the format requires a family's lines together.
//
// The naming rules are checked when a family is declared, so that a bad name is a bug found by
// the unit tests rather than a scrape that node_exporter refuses: names match
// [a-zA-Z_:][a-zA-Z0-9_:]*, counters end in `_total`, nothing else does, and a histogram's name
// does not end in a suffix its own series use (`_bucket`, `_count`, `_sum`).
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ublkrdma::prom {

enum class MetricType : uint8_t { kCounter, kGauge, kHistogram };

using Labels = std::vector<std::pair<std::string, std::string>>;

// A metric family declared against the rules above, or the same name declared twice with a
// different type or help text.
struct NamingError : std::logic_error {
  using std::logic_error::logic_error;
};

bool valid_metric_name(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, and not starting with "__" (reserved for Prometheus itself).
bool valid_label_name(std::string_view name);
// Label values escape backslash, double quote and newline; HELP text escapes backslash and newline.
std::string escape_label_value(std::string_view v);
std::string escape_help(std::string_view v);
// A sample value: integers exactly (no exponent up to 2^53), "+Inf", "-Inf", "NaN".
std::string format_value(double v);
std::string format_value(uint64_t v);

class TextWriter {
 public:
  // Declares a family (HELP and TYPE lines); declaring it again with the same type and help is
  // a no-op, so loops may declare as they go. Throws NamingError.
  void declare(std::string_view name, MetricType type, std::string_view help);

  // A counter or gauge sample of a declared family. Throws NamingError for an undeclared family,
  // a histogram, or an invalid label name.
  void sample(std::string_view name, const Labels& labels, double value);
  void sample(std::string_view name, const Labels& labels, uint64_t value);

  // A histogram of a declared family: `counts` per bucket (not cumulative), one per bound in
  // `upper_bounds` (ascending) plus one last for the values above them; `sum` of all values.
  // Writes the cumulative `_bucket{le="..."}` series, `le="+Inf"`, `_sum` and `_count` (which
  // equals the +Inf bucket by construction).
  void histogram(std::string_view name, const Labels& labels, std::span<const double> upper_bounds,
                 std::span<const uint64_t> counts, double sum);

  // Every family in the order declared; empty families get their HELP and TYPE lines only.
  std::string text() const;

 private:
  struct Family {
    std::string name;
    MetricType type;
    std::string help;
    std::vector<std::string> lines;  // sample lines, each ending in '\n'
  };
  Family& family(std::string_view name);
  static std::string series(std::string_view name, const Labels& labels, const std::string* le = nullptr);

  std::vector<Family> families_;
};

}  // namespace ublkrdma::prom
