// Key text (URDMA-KEY-1:...) and `serve --auth-keys` files: any text either parses or is refused
// with a reason (SetupError naming file and line for a table), never anything else; a parsed key
// prints back to the text it came from, and a parsed table holds valid, distinct host ids and
// valid export names only.
#include <set>
#include <string>
#include <string_view>

#include "base/errors.h"
#include "fuzz/fuzz_check.h"
#include "server/auth_keys.h"
#include "transport/auth.h"
#include "transport/wire_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  auth::ParsedKey k = auth::parse_key(text);
  if (!k.error) {
    std::string printed = auth::format_key(k.key);
    FUZZ_CHECK(text.find(printed) != std::string_view::npos);
    FUZZ_CHECK(!auth::parse_key(printed).error && auth::parse_key(printed).key == k.key);
  }

  try {
    server::AuthTable t = server::AuthTable::parse(text, "keys");
    std::set<std::string> seen;
    for (const auto& h : t.hosts()) {
      FUZZ_CHECK(wire::valid_identity(h.host_id) && seen.insert(h.host_id).second);
      FUZZ_CHECK(h.all_exports || !h.exports.empty());
      for (const auto& e : h.exports) {
        wire::ConnectRequest probe;
        FUZZ_CHECK(probe.set_name(e));
      }
      FUZZ_CHECK(t.find(h.host_id) == &h);
    }
  } catch (const SetupError& e) {
    FUZZ_CHECK(std::string_view(e.what()).starts_with("keys:"));
  }
  return 0;
}
