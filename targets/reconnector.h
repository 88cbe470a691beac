#pragma once
// Rebuilds an rdma queue's lost connections off its thread: connecting takes round trips to
// the server (and up to the connect timeout when it does not answer), which the queue thread
// must not wait for while its other connections serve. The queue asks for a connection by
// index; the result comes back through an eventfd the queue thread watches. Started on the
// first request, so a queue that never loses a connection has no extra thread.
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "targets/rdma_connection.h"

namespace ublkrdma::targets {

class Reconnector {
 public:
  // Connects connection `index` of the queue; throws SetupError with the reason.
  using Connect = std::function<RdmaConnection(size_t index)>;
  struct Result {
    size_t index = 0;
    std::unique_ptr<RdmaConnection> connection;  // null when the attempt failed
    std::string error;                           // ... with this reason
    int errno_value = 0;                         // ... and errno (0 if none)
  };

  Reconnector(Connect connect, std::string thread_name);
  // An attempt under way finishes first (within the connect timeout); its result is dropped.
  ~Reconnector();
  Reconnector(const Reconnector&) = delete;
  Reconnector& operator=(const Reconnector&) = delete;

  // Readable while results wait.
  int event_fd() const { return event_.get(); }
  // --- queue thread
  void request_st(size_t index);
  std::vector<Result> take_results_st();

 private:
  void run();

  Connect connect_;
  std::string thread_name_;
  UniqueFd event_;
  std::mutex mu_;  // guards the two lists and stop_: setup-path traffic, never per request
  std::condition_variable wake_;
  std::deque<size_t> requests_;
  std::vector<Result> results_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ublkrdma::targets
