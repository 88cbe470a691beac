// Backend semantics for ram, null and file (regular files, O_DIRECT and buffered, on the
// build host's /tmp and on tmpfs) for every op, plus the validator in front of them.
#include "server/backend.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "base/errors.h"
#include "base/mapped_region.h"
#include "server/backend_file.h"
#include "server/backend_ram.h"
#include "server/command_validator.h"

namespace ublkrdma::server {
namespace {

constexpr uint16_t kDepth = 8;

// Submits one command and polls (sleeping on event_fd() when there is one) until it completes.
int run(BackendQueue& q, uint16_t tag, wire::Opcode op, uint64_t offset, uint32_t length, std::byte* buffer,
        uint32_t flags = 0) {
  int rc = q.submit(tag, op, offset, length, buffer, flags);
  if (rc < 0) return rc;
  EXPECT_TRUE(q.busy());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  BackendCompletion c[4];
  while (std::chrono::steady_clock::now() < deadline) {
    int n = q.poll(c);
    EXPECT_GE(n, 0);
    if (n > 0) {
      EXPECT_EQ(n, 1);
      EXPECT_EQ(c[0].tag, tag);
      EXPECT_FALSE(q.busy());
      return c[0].result;
    }
    if (q.event_fd() >= 0) {
      pollfd p{q.event_fd(), POLLIN, 0};
      ::poll(&p, 1, 100);
    }
  }
  ADD_FAILURE() << "no completion for tag " << tag;
  return -ETIMEDOUT;
}

void fill(std::byte* p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = std::byte(uint8_t(seed + i * 7 + (i >> 9)));
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

bool all_zero(const std::byte* p, size_t n) {
  return std::all_of(p, p + n, [](std::byte b) { return b == std::byte{0}; });
}

CommandLimits limits_of(const Backend& b, uint32_t max_io = 1u << 20, uint32_t depth = kDepth) {
  return CommandLimits{b.size(), b.block_size(), b.read_only(), b.supported_ops(), max_io, depth};
}

ExportSpec spec(BackendKind kind, uint64_t size, std::string path = {}) {
  ExportSpec s;
  s.name = "t";
  s.kind = kind;
  s.size = size;
  s.path = std::move(path);
  return s;
}

// The validator refuses what would leave the export, for every backend.
void expect_validator_guards(const Backend& b) {
  CommandLimits l = limits_of(b);
  uint32_t bs = b.block_size();
  for (wire::Opcode op : {wire::Opcode::kRead, wire::Opcode::kWrite, wire::Opcode::kDiscard, wire::Opcode::kWriteZeroes}) {
    EXPECT_EQ(validate_command({uint8_t(op), 0, 0, b.size() - bs, bs}, l), b.read_only() && op != wire::Opcode::kRead
                                                                                ? CommandCheck::kReadOnly
                                                                                : CommandCheck::kOk);
    EXPECT_EQ(validate_command({uint8_t(op), 0, 0, b.size(), bs}, l), CommandCheck::kOutOfRange);
    EXPECT_EQ(validate_command({uint8_t(op), 0, 0, b.size() - bs, 2 * bs}, l), CommandCheck::kOutOfRange);
    EXPECT_EQ(validate_command({uint8_t(op), 0, 0, UINT64_MAX - bs + 1, bs}, l), CommandCheck::kOutOfRange);
  }
}

// ---- ram ----

TEST(RamBackend, EveryOp) {
  auto b = open_backend(spec(BackendKind::kRam, 1 << 20));
  EXPECT_EQ(b->size(), 1u << 20);
  EXPECT_EQ(b->block_size(), 512u);
  EXPECT_FALSE(b->read_only());
  EXPECT_EQ(b->supported_ops(), kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes);
  std::span<std::byte> mem = b->direct_memory();
  ASSERT_EQ(mem.size(), 1u << 20);
  EXPECT_TRUE(all_zero(mem.data(), mem.size()));
  auto q = b->open_queue(mem, kDepth);
  ASSERT_GE(q->event_fd(), 0);  // for large zeroings (LargeZeroingTakesTurnsWithOtherCommands)
  EXPECT_FALSE(readable(q->event_fd()));
  EXPECT_FALSE(q->busy());

  // WRITE: the server RDMA-READs the client's data straight into the export, then submits.
  fill(mem.data() + 8192, 16384, 1);
  std::vector<std::byte> expect(mem.begin() + 8192, mem.begin() + 8192 + 16384);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kWrite, 8192, 16384, mem.data() + 8192), 16384);
  EXPECT_EQ(run(*q, 1, wire::Opcode::kWrite, 8192, 16384, mem.data() + 8192, wire::kCmdFlagFua), 16384);
  EXPECT_EQ(run(*q, 2, wire::Opcode::kRead, 8192, 16384, mem.data() + 8192), 16384);
  EXPECT_EQ(0, std::memcmp(mem.data() + 8192, expect.data(), expect.size()));  // untouched
  EXPECT_EQ(run(*q, 3, wire::Opcode::kFlush, 0, 0, nullptr), 0);

  // Anything but the export's own memory is refused: the ram path never copies.
  std::vector<std::byte> elsewhere(4096);
  EXPECT_EQ(q->submit(0, wire::Opcode::kRead, 0, 4096, elsewhere.data(), 0), -EINVAL);
  EXPECT_EQ(q->submit(0, wire::Opcode::kWrite, 4096, 4096, mem.data(), 0), -EINVAL);
  EXPECT_FALSE(q->busy());

  // DISCARD and WRITE_ZEROES zero exactly the range, unaligned edges included.
  fill(mem.data(), mem.size(), 9);
  EXPECT_EQ(run(*q, 4, wire::Opcode::kDiscard, 512, 8192 + 1024, nullptr), 0);
  EXPECT_TRUE(all_zero(mem.data() + 512, 8192 + 1024));
  EXPECT_NE(mem[511], std::byte{0});
  EXPECT_FALSE(all_zero(mem.data() + 512 + 8192 + 1024, 512));
  EXPECT_EQ(run(*q, 5, wire::Opcode::kWriteZeroes, 65536, 65536, nullptr), 0);
  EXPECT_TRUE(all_zero(mem.data() + 65536, 65536));
  EXPECT_FALSE(all_zero(mem.data() + 131072, 512));
  EXPECT_EQ(run(*q, 5, wire::Opcode::kWriteZeroes, mem.size() - 512, 512, nullptr), 0);
  EXPECT_TRUE(all_zero(mem.data() + mem.size() - 512, 512));

  expect_validator_guards(*b);
  // The queue's own guard, should an unvalidated command slip through.
  EXPECT_EQ(q->submit(0, wire::Opcode::kDiscard, mem.size(), 512, nullptr, 0), -EINVAL);
  EXPECT_EQ(q->submit(0, wire::Opcode::kWrite, mem.size() - 512, 1024, mem.data() + mem.size() - 512, 0), -EINVAL);
  EXPECT_EQ(q->submit(0, wire::Opcode::kWriteZeroes, UINT64_MAX - 511, 1024, nullptr, 0), -EINVAL);
}

// A DISCARD / WRITE_ZEROES larger than kRamZeroChunk is done a chunk per poll(), so a 4 GiB
// one does not hold up the connection's other commands for seconds.
TEST(RamBackend, LargeZeroingTakesTurnsWithOtherCommands) {
  constexpr size_t kSize = 64u << 20;
  auto b = open_backend(spec(BackendKind::kRam, kSize));
  std::span<std::byte> mem = b->direct_memory();
  auto q = b->open_queue(mem, kDepth);
  // Not aligned to the chunk at either end.
  const uint64_t off = 512;
  const uint32_t len = uint32_t(kSize - 1024);
  for (wire::Opcode op : {wire::Opcode::kWriteZeroes, wire::Opcode::kDiscard}) {
    SCOPED_TRACE(op == wire::Opcode::kDiscard ? "discard" : "write zeroes");
    std::memset(mem.data(), 0xa5, mem.size());
    ASSERT_EQ(q->submit(0, op, off, len, nullptr, 0), 0);
    EXPECT_TRUE(q->busy());
    // A connection that finds nothing to reap sleeps on event_fd(): it must not sleep now.
    EXPECT_TRUE(readable(q->event_fd()));

    BackendCompletion c[4];
    EXPECT_EQ(q->poll(c), 0);
    const auto zeros = size_t(std::count(mem.begin() + off, mem.begin() + off + len, std::byte{0}));
    EXPECT_GT(zeros, 0u);
    EXPECT_LE(zeros, kRamZeroChunk);
    EXPECT_TRUE(q->busy());
    EXPECT_TRUE(readable(q->event_fd()));

    // A READ submitted meanwhile is answered on the next poll, ahead of the zeroing.
    const uint64_t roff = kSize / 2;
    ASSERT_EQ(q->submit(1, wire::Opcode::kRead, roff, 4096, mem.data() + roff, 0), 0);
    ASSERT_EQ(q->poll(c), 1);
    EXPECT_EQ(c[0].tag, 1);
    EXPECT_EQ(c[0].result, 4096);
    EXPECT_TRUE(q->busy());

    // The rest, a chunk per poll: bounded, never more polls than chunks.
    int polls = 0, n = 0;
    while (n == 0 && polls <= int(len / kRamZeroChunk) + 1) {
      n = q->poll(c);
      ++polls;
    }
    ASSERT_EQ(n, 1);
    EXPECT_EQ(c[0].tag, 0);
    EXPECT_EQ(c[0].result, 0);
    EXPECT_GE(polls, int(len / kRamZeroChunk) - 2);
    EXPECT_FALSE(q->busy());
    EXPECT_FALSE(readable(q->event_fd()));
    EXPECT_TRUE(all_zero(mem.data() + off, len));
    EXPECT_EQ(mem[off - 1], std::byte{0xa5});
    EXPECT_EQ(mem[off + len], std::byte{0xa5});
    EXPECT_EQ(q->poll(c), 0);
  }

  // Up to a chunk stays synchronous.
  std::memset(mem.data(), 0xa5, mem.size());
  ASSERT_EQ(q->submit(2, wire::Opcode::kWriteZeroes, 0, kRamZeroChunk, nullptr, 0), 0);
  EXPECT_TRUE(all_zero(mem.data(), kRamZeroChunk));
  EXPECT_EQ(mem[kRamZeroChunk], std::byte{0xa5});
  EXPECT_FALSE(readable(q->event_fd()));
  BackendCompletion c[1];
  ASSERT_EQ(q->poll(c), 1);
  EXPECT_EQ(c[0].tag, 2);
}

// Several large zeroings in flight at once all finish, with the event fd readable until the last.
TEST(RamBackend, LargeZeroingsQueueUp) {
  constexpr size_t kSize = 16u << 20;
  auto b = open_backend(spec(BackendKind::kRam, kSize));
  std::span<std::byte> mem = b->direct_memory();
  auto q = b->open_queue(mem, kDepth);
  std::memset(mem.data(), 0xa5, mem.size());
  const uint32_t part = uint32_t(kSize / 4);
  for (uint16_t t = 0; t < 4; ++t)
    ASSERT_EQ(q->submit(t, t % 2 ? wire::Opcode::kDiscard : wire::Opcode::kWriteZeroes, t * part, part - 512, nullptr, 0),
              0);
  std::vector<int> seen;
  BackendCompletion c[kDepth];
  for (int polls = 0; q->busy() && polls < 100; ++polls) {
    EXPECT_TRUE(readable(q->event_fd()));
    int n = q->poll(c);
    ASSERT_GE(n, 0);
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(c[i].result, 0);
      seen.push_back(c[i].tag);
    }
  }
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_FALSE(q->busy());
  EXPECT_FALSE(readable(q->event_fd()));
  for (uint16_t t = 0; t < 4; ++t) {
    EXPECT_TRUE(all_zero(mem.data() + t * part, part - 512));
    EXPECT_EQ(mem[t * part + part - 512], std::byte{0xa5});
  }
}

TEST(RamBackend, TagsAndBatches) {
  auto b = open_backend(spec(BackendKind::kRam, 1 << 20));
  std::span<std::byte> mem = b->direct_memory();
  auto q = b->open_queue(mem, kDepth);
  EXPECT_EQ(q->submit(kDepth, wire::Opcode::kFlush, 0, 0, nullptr, 0), -EINVAL);
  for (uint16_t t = 0; t < kDepth; ++t) ASSERT_EQ(q->submit(t, wire::Opcode::kRead, t * 4096, 4096, mem.data() + t * 4096, 0), 0);
  EXPECT_EQ(q->submit(3, wire::Opcode::kFlush, 0, 0, nullptr, 0), -EBUSY);
  BackendCompletion c[3];
  std::vector<int> seen;
  while (q->busy()) {
    int n = q->poll(c);
    ASSERT_GT(n, 0);
    ASSERT_LE(n, 3);
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(c[i].result, 4096);
      seen.push_back(c[i].tag);
    }
  }
  EXPECT_EQ(seen.size(), size_t(kDepth));
  std::sort(seen.begin(), seen.end());
  for (int t = 0; t < kDepth; ++t) EXPECT_EQ(seen[t], t);
  EXPECT_EQ(q->poll(c), 0);
  EXPECT_EQ(q->submit(3, wire::Opcode::kFlush, 0, 0, nullptr, 0), 0);  // the tag is free again
}

TEST(RamBackend, ReadOnly) {
  ExportSpec s = spec(BackendKind::kRam, 1 << 20);
  s.read_only = true;
  auto b = open_backend(s);
  EXPECT_TRUE(b->read_only());
  std::span<std::byte> mem = b->direct_memory();
  auto q = b->open_queue(mem, kDepth);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kRead, 0, 4096, mem.data()), 4096);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kFlush, 0, 0, nullptr), 0);
  EXPECT_EQ(q->submit(0, wire::Opcode::kWrite, 0, 4096, mem.data(), 0), -EROFS);
  EXPECT_EQ(q->submit(0, wire::Opcode::kDiscard, 0, 4096, nullptr, 0), -EROFS);
  EXPECT_EQ(q->submit(0, wire::Opcode::kWriteZeroes, 0, 4096, nullptr, 0), -EROFS);
  expect_validator_guards(*b);
  EXPECT_TRUE(open_backend(spec(BackendKind::kRam, 1 << 20), /*read_only=*/true)->read_only());
}

TEST(RamBackend, HugepagesFallBackAndSetupErrors) {
  ExportSpec s = spec(BackendKind::kRam, 3 << 20);
  s.hugepages = true;
  s.populate = true;
  auto b = open_backend(s);  // MAP_HUGETLB if the host has huge pages reserved, else THP
  ASSERT_EQ(b->direct_memory().size(), 3u << 20);
  b->direct_memory()[(3 << 20) - 1] = std::byte{1};
  EXPECT_THROW(open_backend(spec(BackendKind::kRam, 1000)), SetupError);
  EXPECT_THROW(open_backend(spec(BackendKind::kRam, 0)), SetupError);
  EXPECT_THROW(open_backend(spec(BackendKind::kRam, 1ull << 62)), SetupError);  // mmap fails: reported, no crash
}

// ---- null ----

TEST(NullBackend, EveryOp) {
  auto b = open_backend(spec(BackendKind::kNull, 1ull << 40));
  EXPECT_EQ(b->size(), 1ull << 40);
  EXPECT_EQ(b->block_size(), 512u);
  EXPECT_TRUE(b->direct_memory().empty());
  EXPECT_EQ(b->supported_ops(), kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes);
  auto q = b->open_queue({}, kDepth);
  EXPECT_EQ(q->event_fd(), -1);
  std::vector<std::byte> buf(8192);
  fill(buf.data(), buf.size(), 3);
  std::vector<std::byte> before = buf;
  EXPECT_EQ(run(*q, 0, wire::Opcode::kWrite, 0, 8192, buf.data()), 8192);
  EXPECT_EQ(run(*q, 1, wire::Opcode::kWrite, 4096, 8192, buf.data(), wire::kCmdFlagFua), 8192);
  EXPECT_EQ(run(*q, 2, wire::Opcode::kRead, (1ull << 40) - 8192, 8192, buf.data()), 8192);
  EXPECT_EQ(buf, before);  // reads leave the buffer as it is
  EXPECT_EQ(run(*q, 3, wire::Opcode::kFlush, 0, 0, nullptr), 0);
  EXPECT_EQ(run(*q, 4, wire::Opcode::kDiscard, 0, 1u << 30, nullptr), 0);
  EXPECT_EQ(run(*q, 5, wire::Opcode::kWriteZeroes, 0, 1u << 30, nullptr), 0);
  EXPECT_EQ(q->submit(0, wire::Opcode::kRead, 1ull << 40, 512, buf.data(), 0), -EINVAL);
  EXPECT_EQ(q->submit(kDepth, wire::Opcode::kRead, 0, 512, buf.data(), 0), -EINVAL);
  expect_validator_guards(*b);

  auto ro = open_backend(spec(BackendKind::kNull, 1 << 20), true);
  auto rq = ro->open_queue({}, kDepth);
  EXPECT_EQ(run(*rq, 0, wire::Opcode::kRead, 0, 512, buf.data()), 512);
  EXPECT_EQ(rq->submit(0, wire::Opcode::kWrite, 0, 512, buf.data(), 0), -EROFS);
  EXPECT_EQ(rq->submit(0, wire::Opcode::kWriteZeroes, 0, 512, nullptr, 0), -EROFS);
  expect_validator_guards(*ro);
}

// ---- file ----

class TempFile {
 public:
  TempFile(const std::string& dir, uint64_t size) {
    path_ = dir + "/ublk-rdma-backend-test-XXXXXX";
    int fd = ::mkstemp(path_.data());
    if (fd < 0) throw std::runtime_error("mkstemp in " + dir + ": " + std::strerror(errno));
    if (::ftruncate(fd, off_t(size)) != 0) throw std::runtime_error("ftruncate");
    ::close(fd);
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

  std::vector<std::byte> read(uint64_t offset, size_t n) const {
    std::vector<std::byte> out(n);
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, out.data(), n, off_t(offset)), ssize_t(n));
    ::close(fd);
    return out;
  }
  void write(uint64_t offset, const std::vector<std::byte>& data) const {
    int fd = ::open(path_.c_str(), O_WRONLY);
    EXPECT_EQ(::pwrite(fd, data.data(), data.size(), off_t(offset)), ssize_t(data.size()));
    ::close(fd);
  }
  uint64_t allocated_bytes() const {
    struct stat st;
    ::stat(path_.c_str(), &st);
    return uint64_t(st.st_blocks) * 512;
  }

 private:
  std::string path_;
};

struct FileCase {
  const char* dir;
  bool try_direct;
};

class FileBackendTest : public ::testing::TestWithParam<FileCase> {
 protected:
  static constexpr uint64_t kFileSize = 4 << 20;
  static constexpr size_t kSlab = 1 << 20;  // stands in for the server's RDMA-registered buffers

  void SetUp() override {
    file_ = std::make_unique<TempFile>(GetParam().dir, kFileSize);
    slab_ = MappedRegion::anonymous(kSlab);
    ExportSpec s = spec(BackendKind::kFile, 0, file_->path());
    backend_ = open_file_backend(s, false, FileBackendOptions{GetParam().try_direct});
    RecordProperty("direct_io", backend_->direct_io() ? "yes" : "no");
    std::printf("[          ] %s: %s IO, block size %u\n", GetParam().dir, backend_->direct_io() ? "O_DIRECT" : "buffered",
                backend_->block_size());
  }

  std::byte* slot(unsigned i) { return static_cast<std::byte*>(slab_.get()) + i * 65536; }

  std::unique_ptr<TempFile> file_;
  MappedRegion slab_;
  std::unique_ptr<FileBackend> backend_;
};

TEST_P(FileBackendTest, Properties) {
  EXPECT_EQ(backend_->size(), kFileSize);
  EXPECT_TRUE(backend_->block_size() == 512 || backend_->block_size() == 4096);
  EXPECT_FALSE(backend_->read_only());
  EXPECT_FALSE(backend_->block_device());
  EXPECT_TRUE(backend_->direct_memory().empty());
  EXPECT_EQ(backend_->supported_ops() & (kSupportsFlush | kSupportsFua), kSupportsFlush | kSupportsFua);
  // ext4 and tmpfs punch holes.
  EXPECT_EQ(backend_->supported_ops() & (kSupportsDiscard | kSupportsWriteZeroes), kSupportsDiscard | kSupportsWriteZeroes);
  if (!GetParam().try_direct) {
    EXPECT_FALSE(backend_->direct_io());
  }
  auto q = backend_->open_queue(slab_.bytes(), kDepth);
  EXPECT_GE(q->event_fd(), 0);
  EXPECT_TRUE(dynamic_cast<FileBackendQueue&>(*q).fixed_buffers());
  expect_validator_guards(*backend_);
}

TEST_P(FileBackendTest, WriteReadFlushFua) {
  auto q = backend_->open_queue(slab_.bytes(), kDepth);
  fill(slot(0), 65536, 5);
  std::vector<std::byte> data(slot(0), slot(0) + 65536);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kWrite, 65536, 65536, slot(0)), 65536);
  EXPECT_EQ(file_->read(65536, 65536), data);  // reached the file (O_DIRECT or page cache)
  std::memset(slot(1), 0xee, 65536);
  EXPECT_EQ(run(*q, 1, wire::Opcode::kRead, 65536, 65536, slot(1)), 65536);
  EXPECT_EQ(0, std::memcmp(slot(1), data.data(), data.size()));
  EXPECT_EQ(run(*q, 2, wire::Opcode::kFlush, 0, 0, nullptr), 0);

  fill(slot(2), 4096, 77);
  EXPECT_EQ(run(*q, 3, wire::Opcode::kWrite, kFileSize - 4096, 4096, slot(2), wire::kCmdFlagFua), 4096);
  std::vector<std::byte> tail(slot(2), slot(2) + 4096);
  EXPECT_EQ(file_->read(kFileSize - 4096, 4096), tail);

  // The block size is the alignment unit: smallest aligned IO at the very end works.
  uint32_t bs = backend_->block_size();
  EXPECT_EQ(run(*q, 4, wire::Opcode::kRead, kFileSize - bs, bs, slot(3)), int(bs));
  EXPECT_EQ(0, std::memcmp(slot(3), tail.data() + 4096 - bs, bs));
}

TEST_P(FileBackendTest, BuffersOutsideTheFixedOnesStillWork) {
  auto q = backend_->open_queue(slab_.bytes(), kDepth);
  MappedRegion other = MappedRegion::anonymous(65536);
  auto* p = static_cast<std::byte*>(other.get());
  fill(p, 8192, 11);
  std::vector<std::byte> data(p, p + 8192);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kWrite, 0, 8192, p), 8192);
  std::memset(p, 0, 8192);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kRead, 0, 8192, p), 8192);
  EXPECT_EQ(0, std::memcmp(p, data.data(), 8192));
  // A buffer straddling the end of the fixed region falls back to a plain read.
  auto half = backend_->open_queue(slab_.bytes().first(kSlab / 2), kDepth);
  EXPECT_TRUE(dynamic_cast<FileBackendQueue&>(*half).fixed_buffers());
  std::byte* straddle = static_cast<std::byte*>(slab_.get()) + kSlab / 2 - 4096;
  std::memset(straddle, 0, 8192);
  EXPECT_EQ(run(*half, 1, wire::Opcode::kRead, 0, 8192, straddle), 8192);
  EXPECT_EQ(0, std::memcmp(straddle, data.data(), 8192));

  // Without fixed buffers at all.
  auto plain = backend_->open_queue({}, kDepth);
  EXPECT_FALSE(dynamic_cast<FileBackendQueue&>(*plain).fixed_buffers());
  std::memset(slot(0), 0, 8192);
  EXPECT_EQ(run(*plain, 0, wire::Opcode::kRead, 0, 8192, slot(0)), 8192);
  EXPECT_EQ(0, std::memcmp(slot(0), data.data(), 8192));
}

TEST_P(FileBackendTest, DiscardAndWriteZeroesReadBackZeros) {
  auto q = backend_->open_queue(slab_.bytes(), kDepth);
  std::vector<std::byte> pattern(kFileSize);
  fill(pattern.data(), pattern.size(), 42);
  file_->write(0, pattern);
  uint64_t allocated = file_->allocated_bytes();

  EXPECT_EQ(run(*q, 0, wire::Opcode::kDiscard, 1 << 20, 1 << 20, nullptr), 0);
  EXPECT_EQ(run(*q, 1, wire::Opcode::kRead, 1 << 20, 65536, slot(0)), 65536);
  EXPECT_TRUE(all_zero(slot(0), 65536));
  EXPECT_TRUE(all_zero(file_->read(1 << 20, 1 << 20).data(), 1 << 20));
  EXPECT_LT(file_->allocated_bytes(), allocated);  // a real hole

  uint32_t bs = backend_->block_size();
  EXPECT_EQ(run(*q, 2, wire::Opcode::kWriteZeroes, 3 << 20, 8 * bs, nullptr), 0);
  EXPECT_EQ(run(*q, 3, wire::Opcode::kRead, (3 << 20) - bs, 10 * bs, slot(1)), int(10 * bs));
  EXPECT_EQ(0, std::memcmp(slot(1), pattern.data() + (3 << 20) - bs, bs));  // before: intact
  EXPECT_TRUE(all_zero(slot(1) + bs, 8 * bs));
  EXPECT_EQ(0, std::memcmp(slot(1) + 9 * bs, pattern.data() + (3 << 20) + 8 * bs, bs));  // after: intact
  // Again, so a queue that learnt "no ZERO_RANGE here" (tmpfs) takes its fallback directly.
  EXPECT_EQ(run(*q, 4, wire::Opcode::kWriteZeroes, 0, 4096, nullptr), 0);
  EXPECT_TRUE(all_zero(file_->read(0, 4096).data(), 4096));
  EXPECT_EQ(file_->read(4096, 4096), std::vector<std::byte>(pattern.begin() + 4096, pattern.begin() + 8192));
  // The file keeps its size.
  struct stat st;
  ::stat(file_->path().c_str(), &st);
  EXPECT_EQ(uint64_t(st.st_size), kFileSize);
}

TEST_P(FileBackendTest, ManyInFlightAndEventFd) {
  auto q = backend_->open_queue(slab_.bytes(), kDepth);
  for (uint16_t t = 0; t < kDepth; ++t) fill(slot(t), 65536, uint8_t(t));
  for (uint16_t t = 0; t < kDepth; ++t) ASSERT_EQ(q->submit(t, wire::Opcode::kWrite, t * 65536ull, 65536, slot(t), 0), 0);
  EXPECT_EQ(q->submit(2, wire::Opcode::kFlush, 0, 0, nullptr, 0), -EBUSY);
  std::vector<bool> done(kDepth);
  BackendCompletion c[3];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int remaining = kDepth;
  while (remaining > 0 && std::chrono::steady_clock::now() < deadline) {
    int n = q->poll(c);  // pushes the batch on the first call, then reaps at most 3
    ASSERT_GE(n, 0);
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(c[i].result, 65536);
      EXPECT_FALSE(done[c[i].tag]);
      done[c[i].tag] = true;
      --remaining;
    }
    if (n == 0) {
      pollfd p{q->event_fd(), POLLIN, 0};
      EXPECT_EQ(::poll(&p, 1, 5000), 1);  // the ring fd wakes a sleeping server
    }
  }
  EXPECT_EQ(remaining, 0);
  EXPECT_FALSE(q->busy());
  pollfd p{q->event_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);  // nothing left: not readable
  for (uint16_t t = 0; t < kDepth; ++t)
    EXPECT_EQ(file_->read(t * 65536ull, 65536), std::vector<std::byte>(slot(t), slot(t) + 65536)) << t;
}

TEST_P(FileBackendTest, QueueGuards) {
  auto q = backend_->open_queue(slab_.bytes(), kDepth);
  EXPECT_EQ(q->submit(kDepth, wire::Opcode::kRead, 0, 4096, slot(0), 0), -EINVAL);
  EXPECT_EQ(q->submit(0, wire::Opcode::kRead, kFileSize, 4096, slot(0), 0), -EINVAL);
  EXPECT_EQ(q->submit(0, wire::Opcode::kWrite, kFileSize - 4096, 8192, slot(0), 0), -EINVAL);  // would grow the file
  EXPECT_EQ(q->submit(0, wire::Opcode::kDiscard, UINT64_MAX - 4095, 8192, nullptr, 0), -EINVAL);
  EXPECT_EQ(q->submit(0, wire::Opcode::kRead, 0, 4096, nullptr, 0), -EINVAL);
  EXPECT_FALSE(q->busy());
  BackendCompletion c[1];
  EXPECT_EQ(q->poll(c), 0);
}

TEST_P(FileBackendTest, ShortReadAfterTruncateIsAnError) {
  auto q = backend_->open_queue(slab_.bytes(), kDepth);
  // Someone shrinks the file under the server: the read gets part of the data, then EOF.
  ASSERT_EQ(::truncate(file_->path().c_str(), kFileSize - 8192), 0);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kRead, kFileSize - 16384, 16384, slot(0)), -EIO);
  EXPECT_EQ(run(*q, 1, wire::Opcode::kRead, kFileSize - 8192, 8192, slot(0)), -EIO);
  EXPECT_EQ(run(*q, 2, wire::Opcode::kRead, 0, 8192, slot(0)), 8192);
}

TEST_P(FileBackendTest, ReadOnly) {
  backend_.reset();
  auto ro = open_file_backend(spec(BackendKind::kFile, 0, file_->path()), true, FileBackendOptions{GetParam().try_direct});
  EXPECT_TRUE(ro->read_only());
  EXPECT_EQ(ro->supported_ops() & (kSupportsDiscard | kSupportsWriteZeroes), 0u);
  auto q = ro->open_queue(slab_.bytes(), kDepth);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kRead, 0, 4096, slot(0)), 4096);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kFlush, 0, 0, nullptr), 0);
  EXPECT_EQ(q->submit(0, wire::Opcode::kWrite, 0, 4096, slot(0), 0), -EROFS);
  EXPECT_EQ(q->submit(0, wire::Opcode::kDiscard, 0, 4096, nullptr, 0), -EROFS);
  EXPECT_EQ(q->submit(0, wire::Opcode::kWriteZeroes, 0, 4096, nullptr, 0), -EROFS);
  expect_validator_guards(*ro);
  // Two read-only servers may share a file; a writer may not join them.
  auto ro2 = open_file_backend(spec(BackendKind::kFile, 0, file_->path()), true);
  EXPECT_THROW(open_file_backend(spec(BackendKind::kFile, 0, file_->path()), false), SetupError);
}

INSTANTIATE_TEST_SUITE_P(Host, FileBackendTest,
                         ::testing::Values(FileCase{"/tmp", true}, FileCase{"/tmp", false}, FileCase{"/dev/shm", true},
                                           FileCase{"/dev/shm", false}),
                         [](const auto& test_case) {
                           std::string dir = test_case.param.dir[1] == 't' ? "tmp" : "shm";
                           return dir + (test_case.param.try_direct ? "_direct" : "_buffered");
                         });

// A loop device over a temp file: the block-device paths (BLKGETSIZE64, BLKSSZGET, O_EXCL,
// BLKDISCARD, BLKZEROOUT). Needs root and the loop driver; skips saying so otherwise.
class LoopDevice {
 public:
  explicit LoopDevice(const std::string& backing) {
    int ctl = ::open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
      why_ = std::string("/dev/loop-control: ") + std::strerror(errno);
      return;
    }
    for (int attempt = 0; attempt < 5 && fd_ < 0; ++attempt) {
      int n = ::ioctl(ctl, LOOP_CTL_GET_FREE);
      if (n < 0) {
        why_ = std::string("LOOP_CTL_GET_FREE: ") + std::strerror(errno);
        break;
      }
      path_ = "/dev/loop" + std::to_string(n);
      int dev = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
      int file = ::open(backing.c_str(), O_RDWR | O_CLOEXEC);
      if (dev >= 0 && file >= 0 && ::ioctl(dev, LOOP_SET_FD, file) == 0) {
        fd_ = dev;
      } else {
        why_ = path_ + ": " + std::strerror(errno);
        if (dev >= 0) ::close(dev);
      }
      if (file >= 0) ::close(file);
    }
    ::close(ctl);
  }
  ~LoopDevice() {
    if (fd_ >= 0) {
      ::ioctl(fd_, LOOP_CLR_FD, 0);
      ::close(fd_);
    }
  }
  bool ok() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  const std::string& why() const { return why_; }

 private:
  int fd_ = -1;
  std::string path_, why_;
};

TEST(FileBackendBlockDevice, EveryOp) {
  TempFile backing("/tmp", 8 << 20);
  std::vector<std::byte> pattern(8 << 20);
  fill(pattern.data(), pattern.size(), 21);
  backing.write(0, pattern);
  LoopDevice loop(backing.path());
  if (!loop.ok()) GTEST_SKIP() << "no loop device to test block-device exports on: " << loop.why();

  auto b = open_file_backend(spec(BackendKind::kFile, 0, loop.path()), false);
  EXPECT_TRUE(b->block_device());
  EXPECT_EQ(b->size(), 8u << 20);
  EXPECT_EQ(b->block_size(), 512u);
  EXPECT_EQ(b->supported_ops(), kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes);
  // Writable block devices are opened O_EXCL: a second writer is refused.
  EXPECT_THROW(open_file_backend(spec(BackendKind::kFile, 0, loop.path()), false), SetupError);

  MappedRegion slab = MappedRegion::anonymous(1 << 20);
  auto* buf = static_cast<std::byte*>(slab.get());
  auto q = b->open_queue(slab.bytes(), kDepth);
  EXPECT_EQ(run(*q, 0, wire::Opcode::kRead, 4096, 65536, buf), 65536);
  EXPECT_EQ(0, std::memcmp(buf, pattern.data() + 4096, 65536));
  fill(buf, 65536, 99);
  std::vector<std::byte> data(buf, buf + 65536);
  EXPECT_EQ(run(*q, 1, wire::Opcode::kWrite, 1 << 20, 65536, buf, wire::kCmdFlagFua), 65536);
  EXPECT_EQ(run(*q, 2, wire::Opcode::kFlush, 0, 0, nullptr), 0);
  std::memset(buf, 0, 65536);
  EXPECT_EQ(run(*q, 3, wire::Opcode::kRead, 1 << 20, 65536, buf), 65536);
  EXPECT_EQ(0, std::memcmp(buf, data.data(), 65536));

  EXPECT_EQ(run(*q, 4, wire::Opcode::kDiscard, 2 << 20, 1 << 20, nullptr), 0);
  EXPECT_EQ(run(*q, 5, wire::Opcode::kRead, 2 << 20, 65536, buf), 65536);
  EXPECT_TRUE(all_zero(buf, 65536));
  EXPECT_EQ(run(*q, 6, wire::Opcode::kWriteZeroes, 4 << 20, 4096, nullptr), 0);
  EXPECT_EQ(run(*q, 7, wire::Opcode::kRead, (4 << 20) - 512, 4096 + 1024, buf), 4096 + 1024);
  EXPECT_EQ(0, std::memcmp(buf, pattern.data() + (4 << 20) - 512, 512));
  EXPECT_TRUE(all_zero(buf + 512, 4096));
  EXPECT_EQ(0, std::memcmp(buf + 512 + 4096, pattern.data() + (4 << 20) + 4096, 512));
  EXPECT_EQ(q->submit(0, wire::Opcode::kDiscard, 8 << 20, 512, nullptr, 0), -EINVAL);
  expect_validator_guards(*b);
  q.reset();
  b.reset();

  auto ro = open_file_backend(spec(BackendKind::kFile, 0, loop.path()), true);
  EXPECT_TRUE(ro->read_only());
  EXPECT_EQ(ro->supported_ops() & (kSupportsDiscard | kSupportsWriteZeroes), 0u);
  auto rq = ro->open_queue(slab.bytes(), kDepth);
  EXPECT_EQ(run(*rq, 0, wire::Opcode::kRead, 1 << 20, 65536, buf), 65536);
  EXPECT_EQ(0, std::memcmp(buf, data.data(), 65536));
  EXPECT_EQ(rq->submit(0, wire::Opcode::kWrite, 0, 512, buf, 0), -EROFS);
}

TEST(FileBackendSetup, Errors) {
  auto expect_error = [](const std::string& path, const char* needle) {
    try {
      open_backend(spec(BackendKind::kFile, 0, path));
      ADD_FAILURE() << path << ": no error";
    } catch (const SetupError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("export 't'"), std::string::npos) << e.what();
    }
  };
  expect_error("/nonexistent/disk.img", "No such file");
  expect_error("/tmp", "neither a regular file nor a block device");
  expect_error("/dev/null", "neither a regular file nor a block device");
  TempFile empty("/tmp", 0);
  expect_error(empty.path(), "is empty");
  TempFile tiny("/tmp", 100);
  expect_error(tiny.path(), "is empty");
  TempFile held("/tmp", 1 << 20);
  auto first = open_backend(spec(BackendKind::kFile, 0, held.path()));
  expect_error(held.path(), "in use");
}

TEST(FileBackendSetup, SizeRoundsDownToTheBlockSize) {
  TempFile f("/tmp", (1 << 20) + 1000);
  auto b = open_backend(spec(BackendKind::kFile, 0, f.path()));
  EXPECT_EQ(b->size() % b->block_size(), 0u);
  EXPECT_EQ(b->size(), (1u << 20) + 1000 - 1000 % b->block_size());
}

}  // namespace
}  // namespace ublkrdma::server
