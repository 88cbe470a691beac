#include "base/host_port.h"

#include <algorithm>
#include <charconv>

#include "base/errors.h"

namespace ublkrdma {

HostPort parse_host_port(std::string_view text, uint16_t default_port, std::string_view what) {
  HostPort hp{std::string(text), default_port};
  std::string_view port_text;
  bool has_port = false;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) throw_setup("{} {}: missing ']'", what, text);
    hp.host = std::string(text.substr(1, close - 1));
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') throw_setup("{} {}: expected ':PORT' after ']'", what, text);
      port_text = text.substr(close + 2);
      has_port = true;
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    size_t colon = text.find(':');
    hp.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    has_port = true;
  }  // else IPv4 or a host name without port, or a bare IPv6 address
  if (hp.host.empty()) throw_setup("{} '{}': no address", what, text);
  if (has_port) {
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || p == 0 || p > 65535)
      throw_setup("{} {}: '{}' is not a port (1-65535)", what, text, port_text);
    hp.port = uint16_t(p);
  }
  return hp;
}

}  // namespace ublkrdma
