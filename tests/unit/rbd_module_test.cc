// The rbd module's loader (server/rbd_module.h) with stand-ins for the module
// (fake_rbd_module.cc); the real module is loaded by tests/rbd against a Ceph cluster.
#include "server/rbd_module.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/errors.h"
#include "server/rbd_module_abi.h"

namespace ublkrdma::server {
namespace {

namespace fs = std::filesystem;

const std::string kThisBuild = std::string(UBLK_RDMA_FAKE_RBD_MODULE_DIR) + "this";
const std::string kOtherBuild = std::string(UBLK_RDMA_FAKE_RBD_MODULE_DIR) + "other";

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "rbd-module-test-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string load_error(std::vector<std::string> dirs) {
  try {
    load_rbd_module(dirs);
  } catch (const SetupError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(RbdModule, NotLoadedWithoutRbdExports) {
  std::vector<ExportSpec> specs{parse_export_spec("a=null:1M"), parse_export_spec("b=ram:1M")};
  require_rbd_module(specs);
  open_backend(specs[0]);
  EXPECT_EQ(rbd_module_path(), "");
  EXPECT_EQ(rbd_cluster_connections(), 0u);
}

TEST(RbdModule, MissingModuleNamesThePackageAndThePathsTried) {
  TempDir a, b;
  std::string e = load_error({a.path(), b.path()});
  EXPECT_NE(e.find("rbd exports need the module ublk-rdma-rbd.so"), std::string::npos) << e;
  EXPECT_NE(e.find("apt install ublk-rdma-rbd"), std::string::npos) << e;
  EXPECT_NE(e.find(a.path() + "/ublk-rdma-rbd.so: cannot open shared object file"), std::string::npos) << e;
  EXPECT_NE(e.find(b.path() + "/ublk-rdma-rbd.so: cannot open shared object file"), std::string::npos) << e;
}

TEST(RbdModule, AFileThatDoesNotLoadEndsTheSearch) {
  TempDir a;
  std::ofstream(a.path() + "/ublk-rdma-rbd.so") << "not a shared object\n";
  std::string e = load_error({a.path(), kThisBuild});
  EXPECT_NE(e.find("cannot load the rbd module: " + a.path() + "/ublk-rdma-rbd.so"), std::string::npos) << e;
  EXPECT_NE(e.find("package ublk-rdma-rbd"), std::string::npos) << e;
}

TEST(RbdModule, AModuleOfAnotherBuildIsRefused) {
  TempDir empty;
  std::string e = load_error({empty.path(), kOtherBuild, kThisBuild});
  EXPECT_NE(e.find("the rbd module " + kOtherBuild + "/ublk-rdma-rbd.so is from another build"), std::string::npos)
      << e;
  EXPECT_NE(e.find("(ublk-rdma 0.0.1 (git 000000000000))"), std::string::npos) << e;
  EXPECT_NE(e.find(kRbdModuleBuildStamp), std::string::npos) << e;
}

TEST(RbdModule, AModuleOfThisBuildLoads) {
  TempDir empty;
  std::string path;
  const RbdModuleApi& api = load_rbd_module(std::vector<std::string>{empty.path(), kThisBuild}, &path);
  EXPECT_EQ(path, kThisBuild + "/ublk-rdma-rbd.so");
  EXPECT_EQ(api.cluster_connections(), 7u);
  // Its SetupError is caught as the program's own (the module's type information is hidden).
  try {
    api.open(parse_export_spec("vol=rbd:p/i"), false);
    ADD_FAILURE() << "the fake module opened something";
  } catch (const SetupError& e) {
    EXPECT_STREQ(e.what(), "export 'vol': the fake rbd module opens nothing");
    EXPECT_EQ(e.errno_value(), 5);
  }
}

TEST(RbdModule, SearchPath) {
  ASSERT_EQ(::setenv("UBLK_RDMA_MODULE_DIR", "/srv/modules", 1), 0);
  std::vector<std::string> dirs = rbd_module_search_path();
  ASSERT_EQ(dirs.size(), 3u);
  EXPECT_EQ(dirs[0], "/srv/modules");
  EXPECT_EQ(dirs[1], fs::read_symlink("/proc/self/exe").parent_path().string());
  EXPECT_TRUE(dirs[2].ends_with("/ublk-rdma")) << dirs[2];
  ASSERT_EQ(::unsetenv("UBLK_RDMA_MODULE_DIR"), 0);
  EXPECT_EQ(rbd_module_search_path().size(), 2u);
}

}  // namespace
}  // namespace ublkrdma::server
