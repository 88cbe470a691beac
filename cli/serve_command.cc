#include "cli/serve_command.h"

#include <iostream>

#include "base/errors.h"

#if __has_include("targets/server/rdma_server.h")
#include "targets/server/rdma_server.h"
#define UBLK_RDMA_HAVE_SERVER 1
#endif

namespace ublkrdma::cli {

void add_serve_options(CLI::App& cmd, ServeArgs& a) {
  cmd.add_option("--listen", a.listen, "ADDR[:PORT] to listen on (port default 18520)")->required();
  cmd.add_option("--export", a.exports, "NAME=ram:SIZE[,hugepages] | NAME=file:PATH | NAME=null:SIZE")->required();
  cmd.add_option("--read-only", a.read_only, "Export NAME refuses writes");
  cmd.add_option("--allow", a.allow, "Only peers in this CIDR may connect (repeatable)");
  cmd.add_option("--stats", a.stats_path, "Write statistics as JSON to this file");
}

int run_serve(const ServeArgs& a) {
#ifdef UBLK_RDMA_HAVE_SERVER
  (void)a;
  return 1;
#else
  (void)a;
  std::cerr << "ublk-rdma: serve is not built in\n";
  return 1;
#endif
}

}  // namespace ublkrdma::cli
