#pragma once
// The hosts a server authenticates (serve --auth-keys FILE): one line per host,
//   HOST KEY EXPORT[,EXPORT...]      (EXPORT '*': every export)
// with the key in its text form (ublk-rdma gen-key); blank lines and '#' comments ignored. The
// file must be private to its owner, like every key file.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "transport/auth.h"

namespace ublkrdma::server {

struct AuthorizedHost {
  std::string host_id;
  auth::Key key{};
  bool all_exports = false;
  std::vector<std::string> exports;
  size_t line = 0;  // in the file, for messages
  bool may_attach(std::string_view export_name) const;
};

class AuthTable {
 public:
  // Throws SetupError "FILE:LINE: why" for a malformed line or a host named twice.
  static AuthTable parse(std::string_view text, std::string_view file);
  // read_private_file + parse.
  static AuthTable load(const std::string& path);

  const AuthorizedHost* find(std::string_view host_id) const;
  const std::vector<AuthorizedHost>& hosts() const { return hosts_; }
  const std::string& file() const { return file_; }

 private:
  std::vector<AuthorizedHost> hosts_;
  std::string file_;
};

// What a server authenticates with: the table and its own key (serve --key-file), if any. Held
// by shared_ptr: a reload (SIGHUP) replaces it while connections still authenticate with the old.
struct AuthKeys {
  AuthTable table;
  std::optional<auth::Key> server_key;
};

// Whether a connection that host `host_id` authenticated against `before` for `export_name` may
// stay once the table is `after`: the host is still listed, with the same key, and may still
// attach the export. Otherwise the reload revokes it.
bool still_authorized(const AuthTable& before, const AuthTable& after, std::string_view host_id,
                      std::string_view export_name);

// What a reload changed, for its log line: "added a, b; removed c; changed d" ("no host
// changed" when nothing did). A host is changed when its key or its exports are.
std::string describe_reload(const AuthTable& before, const AuthTable& after);

}  // namespace ublkrdma::server
