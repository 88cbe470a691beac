// `serve --export` values: any text either parses to a spec docs/the header describe, or throws
// SetupError (nothing else); a spec prints (describe) to text that parses back to itself.
#include <string_view>

#include "base/errors.h"
#include "fuzz/fuzz_check.h"
#include "server/export_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::server;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  ExportSpec spec;
  try {
    spec = parse_export_spec(text);
  } catch (const SetupError& e) {
    FUZZ_CHECK(e.errno_value() == EINVAL && *e.what() != '\0');
    return 0;
  }
  FUZZ_CHECK(is_valid_export_name(spec.name) && text.starts_with(spec.name + "="));
  FUZZ_CHECK(!spec.read_only);
  if (spec.kind == BackendKind::kFile) {
    FUZZ_CHECK(!spec.path.empty() && text == spec.name + "=file:" + spec.path);
    FUZZ_CHECK(spec.size == 0 && !spec.hugepages && !spec.populate);
  } else if (spec.kind == BackendKind::kRbd) {
    const RbdLocation& at = spec.rbd;
    FUZZ_CHECK(!at.pool.empty() && !at.image.empty() && spec.size == 0 && spec.path.empty());
    for (const std::string* part : {&at.pool, &at.rbd_namespace, &at.image, &at.snapshot})
      FUZZ_CHECK(part->find_first_of("/@?&") == std::string::npos);
    FUZZ_CHECK(at.ceph_id.empty() || is_valid_ceph_id(at.ceph_id));
    FUZZ_CHECK(at.ceph_conf.find('\0') == std::string::npos);
  } else {
    FUZZ_CHECK(spec.kind == BackendKind::kRam || spec.kind == BackendKind::kNull);
    FUZZ_CHECK(spec.size > 0 && spec.size % 512 == 0 && spec.path.empty());
    FUZZ_CHECK(spec.kind == BackendKind::kRam || (!spec.hugepages && !spec.populate));
  }
  ExportSpec again = parse_export_spec(describe(spec));
  FUZZ_CHECK(again.name == spec.name && again.kind == spec.kind && again.size == spec.size &&
             again.path == spec.path && again.hugepages == spec.hugepages && again.populate == spec.populate);
  // describe() leaves out conf and id (they may hold secrets' paths); the image is all there.
  FUZZ_CHECK(again.rbd.pool == spec.rbd.pool && again.rbd.rbd_namespace == spec.rbd.rbd_namespace &&
             again.rbd.image == spec.rbd.image && again.rbd.snapshot == spec.rbd.snapshot);
  return 0;
}
