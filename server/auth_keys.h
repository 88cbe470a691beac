#pragma once
// The hosts a server authenticates (serve --auth-keys FILE): one line per host,
//   HOST KEY EXPORT[,EXPORT...]      (EXPORT '*': every export)
// with the key in its text form (ublk-rdma gen-key); blank lines and '#' comments ignored. The
// file must be private to its owner, like every key file.
#include <cstddef>
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

}  // namespace ublkrdma::server
