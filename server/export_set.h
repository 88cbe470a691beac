#pragma once
// The server's exports and their backends, opened at start.
//
// A local export (ram, file, null) that cannot be opened is a configuration error: the
// constructor throws and the server does not start. A remote one (rbd) may fail because its
// cluster is down for now: it is then *unavailable* (clients are refused with that reason), the
// other exports serve, and a thread of the set tries again every `retry` until it opens. A
// backend, once opened, stays until the set is destroyed (after every connection is gone), so
// connections hold plain references to it.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "server/backend.h"
#include "server/export_spec.h"

namespace ublkrdma::server {

class ExportSet {
 public:
  using Opener = std::unique_ptr<Backend> (*)(const ExportSpec& spec, bool read_only);

  // Throws SetupError (a local export that does not open). `open` is open_backend but for tests.
  ExportSet(std::span<const ExportSpec> specs, std::chrono::milliseconds retry, Opener open = &open_backend);
  ~ExportSet();  // stops retrying (waits for an open in progress)
  ExportSet(const ExportSet&) = delete;
  ExportSet& operator=(const ExportSet&) = delete;

  size_t size() const { return specs_.size(); }
  const ExportSpec& spec(size_t i) const { return specs_[i]; }
  // The export's backend, or null while it is unavailable. Any thread.
  const Backend* backend(size_t i) const { return slots_[i].backend.load(std::memory_order_acquire); }
  // Why export i is unavailable ("" once it is available). Any thread.
  std::string unavailable_reason(size_t i) const;
  // Backend::refresh_size() of every available export. One thread at a time.
  void refresh_sizes() const;

 private:
  struct Slot {
    std::atomic<const Backend*> backend{nullptr};
    std::unique_ptr<Backend> owner;  // written once, by the constructor or the retry thread
    std::string reason;              // guarded by mu_
  };

  void retry_loop();
  bool try_open(size_t i);  // true if it opened

  std::vector<ExportSpec> specs_;
  std::vector<Slot> slots_;
  std::chrono::milliseconds retry_;
  Opener open_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;  // only while some export is unavailable
};

}  // namespace ublkrdma::server
