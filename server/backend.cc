#include "server/backend.h"

#include "base/errors.h"

#include "server/backend_file.h"
#include "server/backend_null.h"
#include "server/backend_ram.h"
#include "server/rbd_module.h"

namespace ublkrdma::server {

std::unique_ptr<Backend> open_backend(const ExportSpec& spec, bool read_only) {
  read_only = read_only || spec.read_only;
  switch (spec.kind) {
    case BackendKind::kRam:
      return open_ram_backend(spec, read_only);
    case BackendKind::kNull:
      return open_null_backend(spec, read_only);
    case BackendKind::kFile:
      return open_file_backend(spec, read_only);
    case BackendKind::kRbd:
      return open_rbd_backend(spec, read_only);
  }
  throw SetupError("export '" + spec.name + "': unknown backend kind");
}

}  // namespace ublkrdma::server
