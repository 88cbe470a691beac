#include "server/rdma_server.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <algorithm>
#include <map>
#include <optional>
#include <mutex>
#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/counter.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/service_notify.h"
#include "server/auth_keys.h"
#include "server/auth_limiter.h"
#include "server/backend.h"
#include "server/connection.h"
#include "server/export_set.h"
#include "server/negotiation.h"
#include "server/poll_group.h"
#include "server/rbd_module.h"
#include "server/server_metrics.h"
#include "transport/auth.h"
#include "transport/auth_protocol.h"
#include "transport/connection.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::server {
namespace {

using Clock = std::chrono::steady_clock;

struct ExportTotals {
  uint64_t connections = 0;
  uint64_t commands = 0, rdma_bytes = 0, copied_bytes = 0, errors = 0, rejected_commands = 0;
  uint64_t reads = 0, writes = 0, flushes = 0, discards = 0, write_zeroes = 0;
  uint64_t keep_alives = 0, backend_errors = 0, unanswered_at_stop = 0, pushed_writes = 0;

  // Counts one connection's counters in.
  void add(const ConnectionStats& c) {
    connections += 1;
    commands += c.commands.get();
    rdma_bytes += c.rdma_bytes.get();
    copied_bytes += c.copied_bytes.get();
    errors += c.errors.get();
    rejected_commands += c.rejected.get();
    reads += c.reads.get();
    writes += c.writes.get();
    flushes += c.flushes.get();
    discards += c.discards.get();
    write_zeroes += c.write_zeroes.get();
    keep_alives += c.keep_alives.get();
    backend_errors += c.backend_errors.get();
    unanswered_at_stop += c.unanswered_at_stop.get();
    pushed_writes += c.pushed_writes.get();
  }

  nlohmann::json to_json() const {
    return {{"connections", connections},     {"commands", commands},
            {"rdma_bytes", rdma_bytes},       {"copied_bytes", copied_bytes},
            {"errors", errors},               {"rejected_commands", rejected_commands},
            {"reads", reads},                 {"writes", writes},
            {"flushes", flushes},             {"discards", discards},
            {"write_zeroes", write_zeroes},   {"keep_alives", keep_alives},
            {"backend_errors", backend_errors}, {"unanswered_at_stop", unanswered_at_stop},
            {"pushed_writes", pushed_writes}};
  }
};

// --auth-keys and --key-file, checked against the exports. Throws SetupError.
std::shared_ptr<const AuthKeys> load_auth_keys(const ServerOptions& opts) {
  auto keys = std::make_shared<AuthKeys>();
  keys->table = AuthTable::load(opts.auth_keys_path);
  for (const AuthorizedHost& h : keys->table.hosts())
    for (const std::string& e : h.exports)
      if (std::none_of(opts.exports.begin(), opts.exports.end(), [&](const ExportSpec& s) { return s.name == e; }))
        throw_setup("{}:{}: host '{}' may attach export '{}', which this server does not export", opts.auth_keys_path,
                    h.line, h.host_id, e);
  if (!opts.key_file.empty()) keys->server_key = auth::read_key_file(opts.key_file);
  return keys;
}

}  // namespace

struct RdmaServer::Impl {
  ServerOptions opts;
  std::unique_ptr<ExportSet> exports;  // destroyed after the connections that use its backends
  std::unique_ptr<transport::Listener> listener;  // none while its RDMA device is removed
  uint16_t port = 0;
  Clock::time_point next_listen{};

  // The device under the listener was removed: let it go (the removal waits for that), and
  // listen again once a device has the address.
  void keep_listening() {
    if (listener && listener->device_removed()) {
      log::server()->warn("the RDMA device under {}:{} was removed: listening again once it is back",
                          opts.listen_addr, port);
      listener.reset();
    }
    if (listener || Clock::now() < next_listen) return;
    transport::rescan_rdma_devices();
    try {
      listener = std::make_unique<transport::Listener>(opts.listen_addr, port);
      log::server()->info("listening on {}:{} again", opts.listen_addr, port);
    } catch (const SetupError& e) {
      log::server()->debug("listening again: {}", e.what());
      next_listen = Clock::now() + std::chrono::seconds(1);
    }
  }
  mutable std::mutex mu;  // guards conns, totals and groups against stats_json() from other threads
  std::vector<std::unique_ptr<Connection>> conns;
  // Declared after conns: the groups' threads are joined before the connections they step go.
  std::vector<std::unique_ptr<PollGroup>> groups;
  std::map<std::string, ExportTotals> totals;  // of closed connections
  RelaxedCounter rejected_connections;
  RelaxedCounter auth_reloads, auth_reload_failures, revoked_connections;
  RelaxedCounter accepted_connections;
  // Authentication (serve --auth-keys): none when null. Replaced by a reload (SIGHUP), on the
  // listener thread, which alone reads it; stats from other threads read auth_on.
  std::shared_ptr<const AuthKeys> auth_keys;
  bool auth_on = false;
  std::optional<AuthLimiter> auth_limiter;

  int find_export(std::string_view name, ExportInfo& info) const {
    for (size_t i = 0; i < opts.exports.size(); ++i) {
      if (opts.exports[i].name != name) continue;
      const Backend* backend = exports->backend(i);
      if (!backend) return kExportUnavailable;
      const Backend& b = *backend;
      info.size = b.size();
      info.block_size = b.block_size();
      info.read_only = b.read_only();
      info.supported_ops = b.supported_ops();
      info.direct_memory = !b.direct_memory().empty();
      info.instance_id = b.instance_id();
      return int(i);
    }
    return -1;
  }

  void handle(transport::IncomingRequest req) {
    std::string peer = req.peer_address();
    std::string peer_ip = transport::sockaddr_host_text(req.peer());  // what failed authentications count against
    ServerLimits limits;
    limits.max_queue_depth = opts.max_queue_depth;
    limits.max_io_bytes = opts.max_io_bytes;
    limits.max_rdma_reads = req.initiator_depth();
    limits.max_memory = opts.max_memory;
    limits.max_host_memory = opts.max_host_memory ? opts.max_host_memory : opts.max_memory / 2;
    limits.max_connections = opts.max_connections;
    limits.push_writes = opts.push_writes;
    limits.pull_reads = opts.pull_reads;
    limits.client_rdma_reads = req.responder_resources();
    limits.auth_required = auth_keys != nullptr;
    limits.auth_backoff = auth_keys && auth_limiter->blocked(peer_ip, Clock::now());
    {
      std::lock_guard lk(mu);  // finished connections not reaped yet still hold their memory
      limits.connections_in_use = uint32_t(conns.size());
      for (const auto& c : conns) {
        limits.memory_in_use += c->memory_bytes();
        if (c->peer_ip() == peer_ip) limits.host_memory_in_use += c->memory_bytes();
      }
    }
    Negotiation n = negotiate(
        req.private_data(), req.peer(), opts.allow,
        [this](std::string_view name, ExportInfo& info) { return find_export(name, info); }, limits);
    if (!n.accepted) {
      rejected_connections.add_st();
      log::server()->warn("refused {} (export '{}', queue {}): {} (answered: {})", peer, log::escaped(n.request.name()),
                          n.request.queue_id, n.reason, wire::connect_status_text(n.reject.status));
      req.reject(wire::encode(n.reject));
      return;
    }
    const ExportSpec& spec = opts.exports[size_t(n.export_index)];
    std::unique_ptr<Connection> sc;
    try {
      auto conn = req.take(Connection::qp_sizes(n.accept));
      uint8_t reads = uint8_t(std::min<int>(req.initiator_depth(), conn->device_attr().max_qp_init_rd_atom));
      if (reads == 0) throw_setup("no RDMA READ possible (client responder resources {})", req.initiator_depth());
      std::optional<ConnectionAuth> ca;
      wire::AcceptAuth aa;
      if (n.accept.auth()) {
        ca.emplace();
        ca->keys = auth_keys;
        ca->context = AuthContext{&ca->keys->table, &ca->keys->server_key, auth::random_nonce(), opts.server_id,
                                  n.request.session_id, n.request.queue_id, spec.name};
        ca->limiter = &*auth_limiter;
        ca->peer_ip = peer_ip;
        aa.server_nonce = ca->context.server_nonce;
        wire::set_identity(aa.server_id, opts.server_id);
      }
      sc = std::make_unique<Connection>(std::move(conn), *exports->backend(size_t(n.export_index)), spec.name, n.accept,
                                        reads, n.request.queue_id, opts, std::move(ca));
      sc->set_budget(n.memory_bytes, peer_ip);
      sc->setup();
      // Without authentication the ACCEPT grants the window; with it, the AUTH_RESULT does.
      if (n.accept.has_window() && !n.accept.auth()) sc->fill_window(n.accept.window_rkey, n.accept.window_addr);
      std::array<uint8_t, wire::kAcceptDataSize + wire::kAcceptAuthSize> pdata{};
      auto head = wire::encode(n.accept);
      auto tail = wire::encode(aa);
      std::copy(head.begin(), head.end(), pdata.begin());
      std::copy(tail.begin(), tail.end(), pdata.begin() + head.size());
      // With PULL_READS the client's RDMA READs run against us: serve as many as it issues.
      transport::accept_connection(sc->rdma(),
                                   std::span<const uint8_t>(pdata).first(n.accept.auth() ? pdata.size() : head.size()),
                                   reads, n.accept.pull_reads() ? req.responder_resources() : 0);
    } catch (const SetupError& e) {
      rejected_connections.add_st();
      log::server()->error("cannot serve {} (export '{}'): {}", peer, spec.name, e.what());
      auto rej = wire::encode(wire::RejectData{wire::kVersion, wire::ConnectStatus::kInternal, wire::kMinVersion});
      if (sc) {
        rdma_reject(sc->rdma().id(), rej.data(), uint8_t(rej.size()));
      } else {
        req.reject(rej);
      }
      return;
    }
    accepted_connections.add_st();
    log::server()->info("accepted {}: export '{}' queue {}, depth {}, max IO {}", peer, spec.name,
                        n.request.queue_id, n.accept.queue_depth, n.accept.max_io_bytes);
    std::lock_guard lk(mu);
    auto group = std::min_element(groups.begin(), groups.end(), [](const auto& a, const auto& b) {
      return a->connections() < b->connections();
    });
    sc->set_poll_group(unsigned(group - groups.begin()));
    (*group)->add(sc.get());
    conns.push_back(std::move(sc));
  }

  // SIGHUP: reads --auth-keys (and --key-file) again. New connections authenticate against the
  // new keys; a connection whose host is gone, has another key or lost the export closes, and
  // so does one still authenticating against the old keys. A file that does not load changes
  // nothing.
  void reload_auth_keys() {
    if (!auth_keys) {
      log::server()->warn("reload: nothing to reload (serve runs without --auth-keys)");
      return;
    }
    std::shared_ptr<const AuthKeys> next;
    try {
      next = load_auth_keys(opts);
    } catch (const SetupError& e) {
      auth_reload_failures.add_st();
      log::server()->error("reload: keeping the keys in use: {}", e.what());
      return;
    }
    std::shared_ptr<const AuthKeys> before = std::exchange(auth_keys, next);
    auth_reloads.add_st();
    size_t revoked = 0;
    std::lock_guard lk(mu);
    for (const auto& c : conns) {
      const AuthKeys* theirs = c->auth_keys();
      if (!theirs || c->done()) continue;
      std::string host = c->authenticated_host();
      bool keep = host.empty() ? theirs == next.get()
                               : still_authorized(theirs->table, next->table, host, c->export_name());
      if (keep) continue;
      c->revoke();
      groups[c->poll_group()]->wake();
      ++revoked;
    }
    revoked_connections.add_st(revoked);
    log::server()->info("reload: {} host(s) from {} ({}); {} connection(s) closed", next->table.hosts().size(),
                        opts.auth_keys_path, describe_reload(before->table, next->table), revoked);
  }

  void reap_finished() {
    std::lock_guard lk(mu);
    for (auto it = conns.begin(); it != conns.end();) {
      if (!(*it)->done()) {
        ++it;
        continue;
      }
      totals[(*it)->export_name()].add((*it)->stats());
      it = conns.erase(it);  // its group has let go of it
    }
  }


  uint64_t memory_total() const {  // with mu held
    uint64_t m = 0;
    for (const auto& c : conns) m += c->memory_bytes();
    return m;
  }

  std::string stats() const { return stats_object().dump(); }

  nlohmann::json stats_object() const {
    std::lock_guard lk(mu);
    std::map<std::string, ExportTotals> per = totals;
    for (const auto& spec : opts.exports) per[spec.name];  // every export, even unused
    nlohmann::json jconns = nlohmann::json::array();
    for (const auto& c : conns) {
      jconns.push_back(c->to_json());
      per[c->export_name()].add(c->stats());
    }
    nlohmann::json jexp = nlohmann::json::object();
    for (const auto& [name, t] : per) jexp[name] = t.to_json();
    for (size_t i = 0; i < exports->size(); ++i) {
      nlohmann::json& e = jexp[exports->spec(i).name];
      e["available"] = exports->backend(i) != nullptr;
      if (const Backend* b = exports->backend(i)) e["size_bytes"] = b->size();  // follows a resize
      if (std::string why = exports->unavailable_reason(i); !why.empty()) e["unavailable_reason"] = why;
    }
    nlohmann::json jgroups = nlohmann::json::array();
    for (const auto& g : groups) jgroups.push_back(g->to_json());
    nlohmann::json j = {{"exports", jexp},
                        {"connections", jconns},
                        {"poll_groups", jgroups},
                        {"accepted_connections", accepted_connections.get()},
                        {"rejected_connections", rejected_connections.get()},
                        {"memory_bytes", memory_total()},
                        {"authentication", auth_on},
                        {"failed_authentications", auth_limiter->failures()},
                        {"auth_reloads", auth_reloads.get()},
                        {"auth_reload_failures", auth_reload_failures.get()},
                        {"revoked_connections", revoked_connections.get()}};
    return j;
  }

  // Replaced whole (temporary file, then rename): readers, node_exporter's textfile collector
  // among them, never see half a file.
  void write_stats() const {
    if (opts.stats_path.empty()) return;
    try {
      const bool prometheus = opts.stats_format == StatsFormat::kPrometheus;
      write_file_atomically(opts.stats_path, prometheus ? server_metrics_text(stats_object()) : stats() + "\n");
    } catch (const SetupError& e) {
      log::server()->warn("cannot write stats: {}", e.what());
    }
  }
};

RdmaServer::RdmaServer(const ServerOptions& opts) : impl_(std::make_unique<Impl>()) {
  impl_->opts = opts;
  impl_->auth_limiter.emplace(opts.auth_backoff);
  if (opts.exports.empty()) throw_setup("serve: no export given (--export NAME=ram:SIZE|file:PATH|null:SIZE|rbd:POOL/IMAGE)");
  // Keys and identities first: a bad configuration opens no export.
  if (!opts.auth_keys_path.empty()) {
    impl_->auth_keys = load_auth_keys(opts);
    impl_->auth_on = true;
    if (!wire::valid_identity(opts.server_id))
      throw_setup("server id '{}' is invalid: use 1..{} of [A-Za-z0-9._:@-] (serve --server-id)",
                  log::escaped(opts.server_id), wire::kIdentityMax);
    log::server()->info("authentication on: {} host(s) from {}, server id '{}'{}", impl_->auth_keys->table.hosts().size(),
                        opts.auth_keys_path, opts.server_id,
                        impl_->auth_keys->server_key ? ", with a server key of its own" : "");
  } else {
    if (!opts.key_file.empty()) throw_setup("serve --key-file needs --auth-keys (the hosts that authenticate)");
    log::server()->warn("connections are NOT authenticated (trusted-network mode): any peer that can reach this "
                        "address{} may attach every export; use --auth-keys FILE",
                        opts.allow.empty() ? "" : " and passes --allow");
  }
  // rbd exports need the rbd module (package ublk-rdma-rbd): a server without it is incomplete,
  // not waiting for a cluster, so it stops here instead of retrying them.
  require_rbd_module(opts.exports);
  impl_->exports = std::make_unique<ExportSet>(opts.exports, opts.export_retry);
  for (size_t i = 0; i < impl_->exports->size(); ++i) {
    const ExportSpec& spec = opts.exports[i];
    const Backend* b = impl_->exports->backend(i);
    if (!b) continue;  // unavailable: ExportSet said why
    log::server()->info("export '{}': {} ({} bytes, {}-byte blocks{})", spec.name, describe(spec), b->size(),
                        b->block_size(), b->read_only() ? ", read-only" : "");
  }
  if (transport::rdma_device_names().empty())
    throw_setup("no RDMA device found (load a driver, e.g. `modprobe rdma_rxe` and "
                "`rdma link add rxe0 type rxe netdev IFACE`)");
  impl_->listener = std::make_unique<transport::Listener>(opts.listen_addr, opts.port);
  impl_->port = impl_->listener->port();
  log::server()->info("listening on {}:{}", opts.listen_addr.empty() ? "*" : opts.listen_addr, port());
}

RdmaServer::~RdmaServer() = default;

uint16_t RdmaServer::port() const { return impl_->port; }

std::string RdmaServer::stats_json() const { return impl_->stats(); }

bool RdmaServer::run(const std::atomic<bool>& stop, std::atomic<bool>* reload) {
  unsigned n = impl_->opts.threads ? impl_->opts.threads : default_poll_groups();
  {
    std::lock_guard lk(impl_->mu);
    for (unsigned i = 0; i < n; ++i) impl_->groups.push_back(std::make_unique<PollGroup>(i, stop));
  }
  log::server()->info("serving with {} poll group thread(s)", n);
  auto next_stats = Clock::now();  // the first stats right away: a script may wait for the file
  while (!stop.load()) {
    try {
      impl_->keep_listening();
      if (!impl_->listener) {
        ::usleep(100000);
      } else if (auto req = impl_->listener->next_request(std::chrono::milliseconds(100))) {
        impl_->handle(std::move(*req));
      }
    } catch (const SetupError& e) {
      log::server()->error("listener: {}", e.what());
      ::usleep(100000);
    }
    impl_->reap_finished();
    if (reload && reload->exchange(false)) impl_->reload_auth_keys();
    if (Clock::now() >= next_stats) {
      impl_->exports->refresh_sizes();
      impl_->write_stats();
      next_stats = Clock::now() + impl_->opts.stats_interval;
    }
  }
  log::server()->info("stopping: draining {} connection(s)", impl_->conns.size());
  const auto give_up = Clock::now() + impl_->opts.stop_timeout;
  bool abandoned = false;
  for (;;) {
    impl_->reap_finished();
    {
      std::lock_guard lk(impl_->mu);
      if (impl_->conns.empty()) break;
      if (Clock::now() >= give_up) {
        std::string which;
        for (const auto& c : impl_->conns)
          which += fmt::format("{}{} (export '{}')", which.empty() ? "" : ", ", c->peer(), c->export_name());
        log::server()->error("stopping: after {} s (--stop-timeout), {} connection(s) have not finished: {}; "
                             "abandoning the requests they hold (a backend that does not answer, or a peer "
                             "that takes no answers); clients reissue what was not answered",
                             std::chrono::duration_cast<std::chrono::seconds>(impl_->opts.stop_timeout).count(),
                             impl_->conns.size(), which);
        abandoned = true;
        break;
      }
    }
    ::usleep(10000);
  }
  impl_->write_stats();
  if (abandoned) return false;
  {
    std::lock_guard lk(impl_->mu);
    impl_->groups.clear();
  }
  log::server()->info("stopped");
  return true;
}

int run_server(const ServerOptions& opts, std::atomic<bool>& stop, std::atomic<bool>& reload) {
  try {
    RdmaServer server(opts);
    service_ready();  // listening, the exports open (or retried): a Type=notify unit is up
    if (!server.run(stop, &reload)) {
      // Destroying the server would wait for the backends (librbd completes into our buffers):
      // the process ends without it, which releases everything they hold.
      spdlog::shutdown();
      std::_Exit(1);
    }
    return 0;
  } catch (const SetupError& e) {
    log::server()->error("{}", e.what());
    return 1;
  }
}

}  // namespace ublkrdma::server
