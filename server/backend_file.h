#pragma once
// file:PATH: a regular file or a block device served through one io_uring per queue.
#include <memory>

#include "server/backend.h"

namespace ublkrdma::server {

struct FileBackendOptions {
  bool try_direct_io = true;  // false: buffered IO even where O_DIRECT would work (tests)
};

class FileBackend : public Backend {
 public:
  virtual bool direct_io() const = 0;     // O_DIRECT in use
  virtual bool block_device() const = 0;  // false: regular file
};

class FileBackendQueue : public BackendQueue {
 public:
  // True if open_queue()'s buffers became io_uring fixed buffers (READ_FIXED/WRITE_FIXED).
  virtual bool fixed_buffers() const = 0;
};

// Opens PATH with O_DIRECT where the file system allows it (else buffered, with a warning).
// Regular files are flock()ed (exclusive, shared when read-only) and block devices opened
// O_EXCL when writable, so two servers cannot export the same storage for writing. Size:
// the file size (rounded down to the block size) or BLKGETSIZE64; block size: 512 for files
// (4096 if O_DIRECT needs it), BLKSSZGET for block devices. Throws SetupError.
std::unique_ptr<FileBackend> open_file_backend(const ExportSpec& spec, bool read_only,
                                               FileBackendOptions options = {});

}  // namespace ublkrdma::server
