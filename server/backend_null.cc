#include "server/backend_null.h"

#include <cerrno>

#include "base/log.h"
#include "base/size.h"
#include "server/backend_immediate.h"

namespace ublkrdma::server {
namespace {

class NullQueue final : public ImmediateQueue {
 public:
  NullQueue(uint64_t size, bool read_only, uint16_t depth) : ImmediateQueue(depth), size_(size), read_only_(read_only) {}

 private:
  int execute_st(uint16_t, wire::Opcode op, uint64_t offset, uint32_t length, std::byte*, uint32_t,
                 int* result) override {
    switch (op) {
      case wire::Opcode::kFlush:
        *result = 0;
        return 0;
      case wire::Opcode::kRead:
      case wire::Opcode::kWrite:
      case wire::Opcode::kDiscard:
      case wire::Opcode::kWriteZeroes:
        if (!within_export(size_, offset, length)) return -EINVAL;
        if (op != wire::Opcode::kRead && read_only_) return -EROFS;
        *result = (op == wire::Opcode::kRead || op == wire::Opcode::kWrite) ? int(length) : 0;
        return 0;
      case wire::Opcode::kKeepAlive:
        break;  // the connection answers it; it never reaches a backend
    }
    return -EINVAL;
  }

  uint64_t size_;
  bool read_only_;
};

class NullBackend final : public Backend {
 public:
  NullBackend(uint64_t size, bool read_only) : size_(size), read_only_(read_only) {}
  uint64_t size() const override { return size_; }
  uint32_t block_size() const override { return kNullBlockSize; }
  bool read_only() const override { return read_only_; }
  uint32_t supported_ops() const override {
    return kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes;
  }
  uint32_t instance_id() const override { return 1; }  // no data: every instance reads the same
  std::span<std::byte> direct_memory() const override { return {}; }
  std::unique_ptr<BackendQueue> open_queue(std::span<std::byte>, uint16_t depth) const override {
    return std::make_unique<NullQueue>(size_, read_only_, depth);
  }

 private:
  uint64_t size_;
  bool read_only_;
};

}  // namespace

std::unique_ptr<Backend> open_null_backend(const ExportSpec& spec, bool read_only) {
  if (spec.size == 0 || spec.size % kNullBlockSize != 0)
    throw_setup("export '{}': null size {} is not a positive multiple of {}", spec.name, spec.size, kNullBlockSize);
  log::server()->info("export '{}': null device of {}{}", spec.name, format_size(spec.size),
                      read_only ? ", read-only" : "");
  return std::make_unique<NullBackend>(spec.size, read_only);
}

}  // namespace ublkrdma::server
