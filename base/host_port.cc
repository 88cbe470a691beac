#include "base/host_port.h"

#include <algorithm>
#include <charconv>

#include "base/errors.h"
#include "base/log.h"

namespace ublkrdma {

HostPort parse_host_port(std::string_view text, uint16_t default_port, std::string_view what) {
  HostPort hp{std::string(text), default_port};
  // For the messages: the text may hold control characters or a NUL.
  std::string shown = log::escaped(text);
  std::string_view port_text;
  bool has_port = false;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) throw_setup("{} {}: missing ']'", what, shown);
    hp.host = std::string(text.substr(1, close - 1));
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') throw_setup("{} {}: expected ':PORT' after ']'", what, shown);
      port_text = text.substr(close + 2);
      has_port = true;
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    size_t colon = text.find(':');
    hp.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    has_port = true;
  }  // else IPv4 or a host name without port, or a bare IPv6 address
  if (hp.host.empty()) throw_setup("{} '{}': no address", what, shown);
  // The host goes to the resolver as a C string, and brackets only enclose an IPv6 address.
  if (hp.host.find_first_of(std::string_view("[]\0", 3)) != std::string::npos)
    throw_setup("{} '{}': '{}' is not an address or host name", what, shown, log::escaped(hp.host));
  if (has_port) {
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || p == 0 || p > 65535)
      throw_setup("{} {}: '{}' is not a port (1-65535)", what, shown, log::escaped(port_text));
    hp.port = uint16_t(p);
  }
  return hp;
}

}  // namespace ublkrdma
