#include "base/work_id.h"

#include <gtest/gtest.h>

using ublkrdma::WorkId;
using ublkrdma::WorkKind;

TEST(WorkId, RoundTripsEveryFieldAtItsLimits) {
  for (WorkKind k : {WorkKind::kUblkCmd, WorkKind::kTargetIo, WorkKind::kRdmaRecv, WorkKind::kSentinel}) {
    for (uint16_t q : {0, 1, 4095}) {
      for (uint16_t tag : {0, 17, 4095, 65535}) {
        for (uint32_t gen : {0u, 1u, 0xffffffu}) {
          WorkId id{k, q, tag, 0xa5, gen};
          EXPECT_EQ(WorkId::decode(id.encode()), id);
        }
      }
    }
  }
}

TEST(WorkId, FieldsDoNotBleedIntoEachOther) {
  WorkId id{WorkKind::kRdmaSend, 4095, 0xffff, 0xff, 0xffffff};
  WorkId only_tag{WorkKind(0), 0, 0xffff, 0, 0};
  EXPECT_EQ(only_tag.encode(), 0xffffull);
  // Generation and queue wrap into their widths instead of corrupting the kind.
  WorkId wide{WorkKind::kRdmaRead, 0xffff, 1, 2, 0xffffffffu};
  WorkId back = WorkId::decode(wide.encode());
  EXPECT_EQ(back.kind, WorkKind::kRdmaRead);
  EXPECT_EQ(back.queue, 0xfff);
  EXPECT_EQ(back.generation, 0xffffffu);
  EXPECT_EQ(WorkId::decode(id.encode()).kind, WorkKind::kRdmaSend);
}

TEST(WorkId, ZeroIsNotAValidKind) {
  // kind 0 never appears in a real id, so a zeroed wr_id/user_data is recognisable.
  EXPECT_NE((WorkId{WorkKind::kUblkCmd, 0, 0, 0, 0}.encode()), 0u);
}
