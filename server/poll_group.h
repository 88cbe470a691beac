#pragma once
// A poll group: one thread that serves a set of connections (SPDK's poll groups are the
// model). `serve --threads N` runs N of them; the listener hands each accepted connection to
// the group with the fewest, and the connection stays there for its life. The thread steps
// every connection in turn; it keeps polling while one of them had work recently (each says
// how long: Connection::spin) and otherwise sleeps on all their completion channels, cm
// channels and backend eventfds at once. A thread count that does not grow with the clients
// is the point: 50 clients of 8 connections each are 400 threads with a thread per connection.
#include <poll.h>

#include <atomic>
#include <cstddef>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "base/counter.h"
#include "base/unique_fd.h"

namespace ublkrdma::server {

class Connection;

class PollGroup {
 public:
  // Starts the thread. `stop` asks every connection to drain and close.
  PollGroup(unsigned index, const std::atomic<bool>& stop);
  // Joins the thread; the connections it still holds are left as they are (the server stops
  // only once every connection is done).
  ~PollGroup();
  PollGroup(const PollGroup&) = delete;
  PollGroup& operator=(const PollGroup&) = delete;

  // On the listener thread: the connection is this group's from now on, until it is done()
  // (Connection::release). It must stay alive until then.
  void add(Connection* conn);
  // The connections it serves: for balancing, read on the listener thread.
  size_t connections() const { return count_.load(std::memory_order_relaxed); }
  // From any thread: the group's next pass comes now, not after its sleep (a revoked connection).
  void wake();
  nlohmann::json to_json() const;

 private:
  void run();
  void take_new();
  bool sleep();

  const unsigned index_;
  const std::atomic<bool>& stop_;
  std::atomic<bool> quit_{false};
  UniqueFd wake_;  // eventfd: a connection was added, or the group must quit
  std::mutex new_mu_;  // guards new_ (setup path only, never the IO path)
  std::vector<Connection*> new_;
  std::vector<Connection*> conns_;  // the thread's own
  std::vector<pollfd> fds_;         // the thread's own, rebuilt for every sleep
  std::atomic<size_t> count_{0};
  RelaxedCounter passes_, sleeps_;
  std::thread thread_;
};

// How many poll groups `serve --threads 0` means: the CPUs this process may run on.
unsigned default_poll_groups();

}  // namespace ublkrdma::server
