#pragma once
// The ublk driver's user ABI (linux/ublk_cmd.h), declared here so that we build against one
// known layout whatever the build host's kernel headers are. Only what we use is declared;
// the sizes are asserted. Kernel differences (which opcodes, which features) are decided at
// run time in ublk/compat.h, nowhere else.
#include <linux/ioctl.h>

#include <cerrno>
#include <cstdint>

namespace ublkrdma::ublk {

// Control commands (legacy opcodes; the ioctl-encoded forms wrap them with _IOR/_IOWR).
inline constexpr uint32_t kCmdGetQueueAffinity = 0x01;
inline constexpr uint32_t kCmdGetDevInfo = 0x02;
inline constexpr uint32_t kCmdAddDev = 0x04;
inline constexpr uint32_t kCmdDelDev = 0x05;
inline constexpr uint32_t kCmdStartDev = 0x06;
inline constexpr uint32_t kCmdStopDev = 0x07;
inline constexpr uint32_t kCmdSetParams = 0x08;
inline constexpr uint32_t kCmdGetParams = 0x09;
inline constexpr uint32_t kCmdStartUserRecovery = 0x10;
inline constexpr uint32_t kCmdEndUserRecovery = 0x11;
inline constexpr uint32_t kCmdGetDevInfo2 = 0x12;
inline constexpr uint32_t kCmdGetFeatures = 0x13;  // exists only ioctl-encoded
inline constexpr uint32_t kCmdUpdateSize = 0x15;   // UBLK_F_UPDATE_SIZE (6.16+): data[0] = sectors
inline constexpr uint32_t kCmdRegBuf = 0x18;       // UBLK_F_SHMEM_ZC (7.1+), ioctl-encoded only
inline constexpr uint32_t kCmdUnregBuf = 0x19;

// IO commands.
inline constexpr uint32_t kIoFetchReq = 0x20;
inline constexpr uint32_t kIoCommitAndFetchReq = 0x21;
inline constexpr uint32_t kIoNeedGetData = 0x22;

// Batch IO commands (UBLK_F_BATCH_IO, 7.0+; ioctl-encoded only): per-queue arrays instead of
// one FETCH / COMMIT_AND_FETCH per tag.
inline constexpr uint32_t kIoPrepIoCmds = 0x25;    // once per tag at start: its buffer, "ready"
inline constexpr uint32_t kIoCommitIoCmds = 0x26;  // results of many tags in one command
inline constexpr uint32_t kIoFetchIoCmds = 0x27;   // multishot: arrays of u16 tags, provided buffers

// IO command results.
inline constexpr int kIoResOk = 0;
inline constexpr int kIoResNeedGetData = 1;
inline constexpr int kIoResAbort = -ENODEV;

inline constexpr uint64_t kCmdBufOffset = 0;
inline constexpr uint32_t kMaxQueueDepth = 4096;
inline constexpr uint32_t kMaxQueues = 4096;

// Feature flags (UBLK_F_*).
inline constexpr uint64_t kFSupportZeroCopy = 1ull << 0;
inline constexpr uint64_t kFUringCmdCompInTask = 1ull << 1;
inline constexpr uint64_t kFNeedGetData = 1ull << 2;
inline constexpr uint64_t kFUserRecovery = 1ull << 3;
inline constexpr uint64_t kFUserRecoveryReissue = 1ull << 4;
inline constexpr uint64_t kFUnprivilegedDev = 1ull << 5;
inline constexpr uint64_t kFCmdIoctlEncode = 1ull << 6;
inline constexpr uint64_t kFUserCopy = 1ull << 7;
inline constexpr uint64_t kFZoned = 1ull << 8;
inline constexpr uint64_t kFUserRecoveryFailIo = 1ull << 9;
inline constexpr uint64_t kFUpdateSize = 1ull << 10;
inline constexpr uint64_t kFAutoBufReg = 1ull << 11;
inline constexpr uint64_t kFQuiesce = 1ull << 12;
inline constexpr uint64_t kFPerIoDaemon = 1ull << 13;
inline constexpr uint64_t kFBufRegOffDaemon = 1ull << 14;
inline constexpr uint64_t kFBatchIo = 1ull << 15;
inline constexpr uint64_t kFIntegrity = 1ull << 16;
inline constexpr uint64_t kFSafeStopDev = 1ull << 17;
inline constexpr uint64_t kFNoAutoPartScan = 1ull << 18;
inline constexpr uint64_t kFShmemZc = 1ull << 19;
// The features ServedDevice asks the driver for, where the kernel has them and the options want them.
inline constexpr uint64_t kFeaturesWeUse =
    kFCmdIoctlEncode | kFUserRecovery | kFUserRecoveryReissue | kFUserRecoveryFailIo | kFBatchIo | kFShmemZc |
    kFUpdateSize;

// Device states.
inline constexpr uint16_t kStateDead = 0;
inline constexpr uint16_t kStateLive = 1;
inline constexpr uint16_t kStateQuiesced = 2;
inline constexpr uint16_t kStateFailIo = 3;

// IO operations (low 8 bits of op_flags) and flags (the rest).
inline constexpr uint8_t kOpRead = 0;
inline constexpr uint8_t kOpWrite = 1;
inline constexpr uint8_t kOpFlush = 2;
inline constexpr uint8_t kOpDiscard = 3;
inline constexpr uint8_t kOpWriteSame = 4;
inline constexpr uint8_t kOpWriteZeroes = 5;
inline constexpr uint32_t kIoFFailfastDev = 1u << 8;
inline constexpr uint32_t kIoFFua = 1u << 13;
inline constexpr uint32_t kIoFNoUnmap = 1u << 15;
// The request's pages lie in a registered shared buffer: IoDesc::addr is (index, offset) into
// it, and the driver copies nothing.
inline constexpr uint32_t kIoFShmemZc = 1u << 19;

// SHMEM_ZC: IoDesc::addr of a kIoFShmemZc request; bits 0-31 the offset, 32-47 the buffer index.
constexpr uint32_t shmem_zc_index(uint64_t addr) { return uint32_t(addr >> 32) & 0xffff; }
constexpr uint32_t shmem_zc_offset(uint64_t addr) { return uint32_t(addr); }

struct ShmemBufReg {  // struct ublk_shmem_buf_reg, at CtrlCmd::addr of REG_BUF
  uint64_t addr;      // page aligned, in the daemon's address space
  uint64_t len;       // page aligned, at most kShmemBufMaxBytes
  uint32_t flags;     // kShmemBufReadOnly
  uint32_t reserved;
};
static_assert(sizeof(ShmemBufReg) == 24);
inline constexpr uint32_t kShmemBufReadOnly = 1u << 0;  // serves WRITEs only (the driver never writes it)
inline constexpr uint64_t kShmemBufMaxBytes = 1ull << 32;

struct CtrlCmd {  // struct ublksrv_ctrl_cmd, shipped in sqe->cmd
  uint32_t dev_id;
  uint16_t queue_id;
  uint16_t len;
  uint64_t addr;
  uint64_t data[1];
  uint16_t dev_path_len;
  uint16_t pad;
  uint32_t reserved;
};
static_assert(sizeof(CtrlCmd) == 32);

struct CtrlDevInfo {  // struct ublksrv_ctrl_dev_info
  uint16_t nr_hw_queues;
  uint16_t queue_depth;
  uint16_t state;
  uint16_t pad0;
  uint32_t max_io_buf_bytes;
  uint32_t dev_id;
  int32_t ublksrv_pid;
  uint32_t pad1;
  uint64_t flags;
  uint64_t ublksrv_flags;
  uint32_t owner_uid;
  uint32_t owner_gid;
  uint64_t reserved1;
  uint64_t reserved2;
};
static_assert(sizeof(CtrlDevInfo) == 64);

struct IoDesc {  // struct ublksrv_io_desc, in the mmap'd per-queue array
  uint32_t op_flags;
  uint32_t nr_sectors;
  uint64_t start_sector;
  uint64_t addr;
  uint8_t op() const { return op_flags & 0xff; }
  uint32_t flags() const { return op_flags & ~0xffu; }
};
static_assert(sizeof(IoDesc) == 24);

struct IoCmd {  // struct ublksrv_io_cmd, shipped in sqe->cmd
  uint16_t q_id;
  uint16_t tag;
  int32_t result;
  uint64_t addr;
};
static_assert(sizeof(IoCmd) == 16);

struct BatchIoCmd {  // struct ublk_batch_io, shipped in sqe->cmd
  uint16_t q_id;
  uint16_t flags;  // kBatchF*; 0 for FETCH_IO_CMDS
  uint16_t nr_elem;
  uint8_t elem_bytes;
  uint8_t reserved;
  uint64_t reserved2;
};
static_assert(sizeof(BatchIoCmd) == 16);
inline constexpr uint16_t kBatchFHasBufAddr = 1u << 1;  // each element carries the tag's buffer

// One element of PREP_IO_CMDS / COMMIT_IO_CMDS with kBatchFHasBufAddr (struct ublk_elem_header
// followed by the buffer address: copy mode, where the driver copies to and from our buffer).
struct BatchElem {
  uint16_t tag;
  uint16_t buf_index;  // only with AUTO_BUF_REG (unused)
  int32_t result;      // COMMIT only: bytes or -errno
  uint64_t buf_addr;
};
static_assert(sizeof(BatchElem) == 16);
inline constexpr unsigned kBatchMaxTagsPerCqe = 128;  // the driver posts at most this many tags at once

inline constexpr uint32_t kAttrReadOnly = 1u << 0;
inline constexpr uint32_t kAttrRotational = 1u << 1;
inline constexpr uint32_t kAttrVolatileCache = 1u << 2;
inline constexpr uint32_t kAttrFua = 1u << 3;

struct ParamBasic {
  uint32_t attrs;
  uint8_t logical_bs_shift;
  uint8_t physical_bs_shift;
  uint8_t io_opt_shift;
  uint8_t io_min_shift;
  uint32_t max_sectors;
  uint32_t chunk_sectors;
  uint64_t dev_sectors;
  uint64_t virt_boundary_mask;
};
static_assert(sizeof(ParamBasic) == 32);

struct ParamDiscard {
  uint32_t discard_alignment;
  uint32_t discard_granularity;
  uint32_t max_discard_sectors;
  uint32_t max_write_zeroes_sectors;
  uint16_t max_discard_segments;
  uint16_t reserved0;
};
static_assert(sizeof(ParamDiscard) == 20);

struct ParamDevt {
  uint32_t char_major;
  uint32_t char_minor;
  uint32_t disk_major;
  uint32_t disk_minor;
};
static_assert(sizeof(ParamDevt) == 16);

inline constexpr uint32_t kParamTypeBasic = 1u << 0;
inline constexpr uint32_t kParamTypeDiscard = 1u << 1;
inline constexpr uint32_t kParamTypeDevt = 1u << 2;

// The prefix of struct ublk_params that we set and read. `len` tells the kernel how much of
// its (possibly longer) struct we pass; 6.12 and later accept this shorter length.
struct Params {
  uint32_t len;
  uint32_t types;
  ParamBasic basic;
  ParamDiscard discard;
  ParamDevt devt;
};
static_assert(sizeof(Params) == 8 + 32 + 20 + 16 + 4 /* tail padding to 8 */);

// ioctl encodings ('u', nr, struct ublksrv_ctrl_cmd / struct ublksrv_io_cmd).
constexpr uint32_t ioctl_ctrl_op(uint32_t nr, bool read_only) {
  return read_only ? _IOR('u', nr, CtrlCmd) : _IOWR('u', nr, CtrlCmd);
}
constexpr uint32_t ioctl_io_op(uint32_t nr) { return _IOWR('u', nr, IoCmd); }
constexpr uint32_t ioctl_batch_op(uint32_t nr) { return _IOWR('u', nr, BatchIoCmd); }
static_assert(ioctl_batch_op(kIoFetchIoCmds) == 0xc0107527u);

}  // namespace ublkrdma::ublk
