// ublk::SharedBuffers without a device: which files it takes, what it records for `recover`,
// and how it indexes the buffers by the driver's index. The files are memfds, named as an
// application would share them: /proc/self/fd/N.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <string>

#include "base/errors.h"
#include "base/unique_fd.h"
#include "ublk/shared_buffers.h"
#include "ublk/uapi.h"

using namespace ublkrdma;
using namespace ublkrdma::ublk;

namespace {

struct Memfd {
  UniqueFd fd;
  std::string path;
  explicit Memfd(off_t size) : fd(::memfd_create("shared-buffers-test", MFD_CLOEXEC)) {
    EXPECT_TRUE(fd);
    EXPECT_EQ(::ftruncate(fd.get(), size), 0);
    path = "/proc/self/fd/" + std::to_string(fd.get());
  }
};

void expect_refused(const SharedBufferSpec& spec, const std::string& words) {
  try {
    SharedBuffers::check({spec});
    ADD_FAILURE() << spec.path << " was taken";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(SharedBuffers, TakesAMemfdOfWholePages) {
  Memfd m(1 << 20);
  SharedBuffers::check({{m.path}});
  SharedBuffers bufs({{m.path}});
  EXPECT_FALSE(bufs.empty());
  EXPECT_TRUE(bufs.regions().empty());  // nothing is registered yet
}

TEST(SharedBuffers, RefusesWhatTheDriverCouldNotPin) {
  expect_refused({"/nonexistent/buffer"}, "No such file");
  Memfd empty(0), odd(10000);
  expect_refused({empty.path}, "0 bytes");
  expect_refused({odd.path}, "10000 bytes");
  expect_refused({"/proc/self/fd", true}, "not a file on tmpfs or hugetlbfs");  // a directory
  std::vector<SharedBufferSpec> many(kMaxSharedBuffers + 1, SharedBufferSpec{empty.path});
  EXPECT_THROW(SharedBuffers{many}, SetupError);
}

TEST(SharedBuffers, RefusesTheSameFileTwice) {
  Memfd m(1 << 16);
  EXPECT_THROW(SharedBuffers::check({{m.path}, {m.path, true}}), SetupError);
  EXPECT_THROW((SharedBuffers{{{m.path}, {m.path, true}}}), SetupError);
}

TEST(SharedBuffers, RecordsWhatRecoverNeedsAndIndexesByTheDriversIndex) {
  Memfd a(1 << 16), b(1 << 20);
  SharedBuffers first({{a.path}, {b.path, true}});
  // As if the driver had given them 0 and 5 (REG_BUF takes the lowest free index).
  nlohmann::json recorded = first.describe();
  ASSERT_EQ(recorded.size(), 2u);
  recorded[0]["index"] = 0;
  recorded[1]["index"] = 5;
  std::vector<SharedBufferSpec> specs = SharedBuffers::from_description(recorded);
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[1].path, b.path);
  EXPECT_TRUE(specs[1].read_only);
  EXPECT_EQ(specs[1].index, 5);

  SharedBuffers again(specs);
  again.adopt_recorded();
  const auto& r = again.regions();
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[0].size, size_t(1) << 16);
  EXPECT_FALSE(r[0].read_only);
  EXPECT_EQ(r[5].size, size_t(1) << 20);
  EXPECT_TRUE(r[5].read_only);
  for (int i = 1; i < 5; ++i) EXPECT_EQ(r[size_t(i)].base, nullptr);
  // The daemon's mapping is shared: what the application writes, the target reads.
  ASSERT_EQ(::pwrite(a.fd.get(), "zero copy", 9, 4096), 9);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r[0].base) + 4096, 9), "zero copy");
}

TEST(SharedBuffers, RecoverRefusesAReplacedFile) {
  Memfd a(1 << 16), other(1 << 16);
  SharedBuffers first({{a.path}});
  nlohmann::json recorded = first.describe();
  recorded[0]["index"] = 0;
  std::vector<SharedBufferSpec> specs = SharedBuffers::from_description(recorded);
  specs[0].path = other.path;  // the same name, another file
  try {
    SharedBuffers again(specs);
    ADD_FAILURE() << "a replaced file was taken";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("replaced"), std::string::npos) << e.what();
  }
}

TEST(SharedBuffers, ZeroCopyAddressLayout) {
  // IoDesc::addr of a SHMEM_ZC request: offset in bits 0-31, buffer index in bits 32-47.
  const uint64_t addr = (uint64_t(7) << 32) | 0x12345000u;
  EXPECT_EQ(shmem_zc_index(addr), 7u);
  EXPECT_EQ(shmem_zc_offset(addr), 0x12345000u);
  EXPECT_EQ(shmem_zc_index(uint64_t(0xffff) << 32 | (uint64_t(1) << 48)), 0xffffu);
  EXPECT_EQ(ioctl_ctrl_op(kCmdRegBuf, false), 0xc0207518u);
  EXPECT_EQ(ioctl_ctrl_op(kCmdUnregBuf, false), 0xc0207519u);
}
