#include <gtest/gtest.h>

#include "ublk/control_device.h"
#include "ublk/served_device.h"
#include "ublk/uapi.h"

using namespace ublkrdma::ublk;

TEST(UblkAbi, IoctlEncodingsMatchTheKernel) {
  // Values the kernel's UBLK_U_* macros produce (_IOR/_IOWR('u', nr, 32- or 16-byte struct)).
  EXPECT_EQ(ioctl_ctrl_op(kCmdAddDev, false), 0xc0207504u);
  EXPECT_EQ(ioctl_ctrl_op(kCmdGetDevInfo, true), 0x80207502u);
  EXPECT_EQ(ioctl_ctrl_op(kCmdGetFeatures, true), 0x80207513u);
  EXPECT_EQ(ioctl_io_op(kIoFetchReq), 0xc0107520u);
  EXPECT_EQ(ioctl_io_op(kIoCommitAndFetchReq), 0xc0107521u);
}

TEST(UblkParams, BasicGeometry) {
  DeviceGeometry g;
  g.size_bytes = 1ull << 30;
  g.read_only = true;
  g.volatile_cache = true;
  g.fua = true;
  Params p = make_params(g, 512 * 1024);
  EXPECT_EQ(p.len, sizeof(Params));
  EXPECT_EQ(p.types, kParamTypeBasic);
  EXPECT_EQ(p.basic.dev_sectors, (1ull << 30) >> 9);
  EXPECT_EQ(p.basic.max_sectors, 1024u);
  EXPECT_EQ(p.basic.logical_bs_shift, 9);
  EXPECT_EQ(p.basic.physical_bs_shift, 12);
  EXPECT_EQ(p.basic.attrs, kAttrReadOnly | kAttrVolatileCache | kAttrFua);
}

TEST(UblkParams, DiscardAndWriteZeroesLimits) {
  DeviceGeometry g;
  g.size_bytes = 1 << 20;
  g.write_zeroes = true;
  Params p = make_params(g, 4096);
  ASSERT_TRUE(p.types & kParamTypeDiscard);
  EXPECT_EQ(p.discard.max_discard_sectors, 0u);  // discard not offered
  EXPECT_GT(p.discard.max_write_zeroes_sectors, 0u);
  EXPECT_EQ(p.discard.max_discard_segments, 1);  // the driver only takes single-segment discards
  EXPECT_NE(p.discard.discard_granularity, 0u);
  // Never ask the kernel to set DEVT: it is read-only and SET_PARAMS would fail.
  EXPECT_FALSE(p.types & kParamTypeDevt);
}

TEST(UblkFeatures, Names) {
  auto n = feature_names(kFUserRecovery | kFCmdIoctlEncode | (1ull << 40));
  ASSERT_EQ(n.size(), 3u);
  EXPECT_EQ(n[0], "USER_RECOVERY");
  EXPECT_EQ(n[1], "CMD_IOCTL_ENCODE");
  EXPECT_EQ(n[2], "UNKNOWN_BIT_40");
  EXPECT_EQ(device_state_name(kStateQuiesced), "QUIESCED");
}
