#include "targets/null_target.h"

#include <nlohmann/json.hpp>

#include "ublk/uapi.h"

namespace ublkrdma::targets {
namespace {

class NullQueue final : public ublk::QueueTarget {
 public:
  void start_st(ublk::QueueContext& ctx) override { ctx_ = &ctx; }
  void submit_st(const ublk::IoRequest& req) override {
    // Reads leave the buffer as it is; writes are discarded.
    ctx_->complete_st(req.tag, int(req.length));
  }

 private:
  ublk::QueueContext* ctx_ = nullptr;
};

class NullFactory final : public ublk::TargetFactory {
 public:
  explicit NullFactory(uint64_t size) : size_(size) {}
  std::string type_name() const override { return "null"; }
  ublk::DeviceGeometry geometry() const override {
    ublk::DeviceGeometry g;
    g.size_bytes = size_;
    g.discard = true;
    g.write_zeroes = true;
    return g;
  }
  std::unique_ptr<ublk::QueueTarget> make_queue_target(uint16_t) override { return std::make_unique<NullQueue>(); }
  std::string describe_json() const override {
    return nlohmann::json{{"type", "null"}, {"size", size_}}.dump();
  }

 private:
  uint64_t size_;
};

}  // namespace

std::unique_ptr<ublk::TargetFactory> make_null_target_factory(uint64_t size_bytes) {
  return std::make_unique<NullFactory>(size_bytes);
}

}  // namespace ublkrdma::targets
