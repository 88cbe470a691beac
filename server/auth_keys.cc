#include "server/auth_keys.h"

#include <openssl/crypto.h>

#include <algorithm>

#include "base/errors.h"
#include "base/log.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::server {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// The next whitespace-separated word of `line` (consumed), or "" at its end.
std::string_view next_word(std::string_view& line) {
  while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
  size_t n = 0;
  while (n < line.size() && !is_space(line[n])) ++n;
  std::string_view w = line.substr(0, n);
  line.remove_prefix(n);
  return w;
}

}  // namespace

bool AuthorizedHost::may_attach(std::string_view export_name) const {
  return all_exports || std::find(exports.begin(), exports.end(), export_name) != exports.end();
}

AuthTable AuthTable::parse(std::string_view text, std::string_view file) {
  AuthTable t;
  t.file_ = std::string(file);
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    std::string_view rest = line;
    std::string_view host = next_word(rest);
    if (host.empty() || host.front() == '#') continue;
    auto fail = [&](const std::string& why) -> SetupError {
      return SetupError(fmt::format("{}:{}: {}", file, line_no, why), EINVAL);
    };
    std::string_view key_text = next_word(rest);
    std::string_view exports = next_word(rest);
    if (exports.empty()) throw fail("expected HOST KEY EXPORT[,EXPORT...] (EXPORT '*' for all)");
    if (!next_word(rest).empty()) throw fail("more than three fields (HOST KEY EXPORT[,EXPORT...])");
    if (!wire::valid_identity(host))
      throw fail(fmt::format("host id '{}' is invalid: use 1..{} of [A-Za-z0-9._:@-]", log::escaped(host),
                             wire::kIdentityMax));
    if (t.find(host)) throw fail(fmt::format("host '{}' is listed twice", host));
    auth::ParsedKey k = auth::parse_key(key_text);
    if (k.error) throw fail(fmt::format("the key of host '{}': {}", host, k.error));
    AuthorizedHost h;
    h.host_id = std::string(host);
    h.key = k.key;
    OPENSSL_cleanse(k.key.data(), k.key.size());
    h.line = line_no;
    if (exports == "*") {
      h.all_exports = true;
    } else {
      for (bool more = true; more;) {
        size_t comma = exports.find(',');
        std::string_view name = exports.substr(0, comma);
        more = comma != std::string_view::npos;
        if (more) exports.remove_prefix(comma + 1);
        wire::ConnectRequest probe;
        if (!probe.set_name(name))
          throw fail(fmt::format("export name '{}' is invalid: use 1..32 of [A-Za-z0-9._-]", log::escaped(name)));
        h.exports.emplace_back(name);
      }
    }
    t.hosts_.push_back(std::move(h));
  }
  return t;
}

AuthTable AuthTable::load(const std::string& path) {
  std::string text = auth::read_private_file(path);
  AuthTable t = parse(text, path);
  OPENSSL_cleanse(text.data(), text.size());
  return t;
}

const AuthorizedHost* AuthTable::find(std::string_view host_id) const {
  for (const auto& h : hosts_)
    if (h.host_id == host_id) return &h;
  return nullptr;
}

namespace {

bool same_key(const AuthorizedHost& a, const AuthorizedHost& b) {
  return CRYPTO_memcmp(a.key.data(), b.key.data(), a.key.size()) == 0;
}

bool same_grants(const AuthorizedHost& a, const AuthorizedHost& b) {
  return same_key(a, b) && a.all_exports == b.all_exports && a.exports == b.exports;
}

}  // namespace

bool still_authorized(const AuthTable& before, const AuthTable& after, std::string_view host_id,
                      std::string_view export_name) {
  const AuthorizedHost* was = before.find(host_id);
  const AuthorizedHost* is = after.find(host_id);
  return was && is && same_key(*was, *is) && is->may_attach(export_name);
}

std::string describe_reload(const AuthTable& before, const AuthTable& after) {
  std::string added, removed, changed;
  auto append = [](std::string& list, const std::string& host) { list += (list.empty() ? "" : ", ") + host; };
  for (const AuthorizedHost& h : after.hosts()) {
    const AuthorizedHost* was = before.find(h.host_id);
    if (!was) {
      append(added, h.host_id);
    } else if (!same_grants(*was, h)) {
      append(changed, h.host_id);
    }
  }
  for (const AuthorizedHost& h : before.hosts())
    if (!after.find(h.host_id)) append(removed, h.host_id);
  std::string out;
  auto part = [&](const char* what, const std::string& list) {
    if (!list.empty()) out += fmt::format("{}{} {}", out.empty() ? "" : "; ", what, list);
  };
  part("added", added);
  part("removed", removed);
  part("changed", changed);
  return out.empty() ? "no host changed" : out;
}

}  // namespace ublkrdma::server
