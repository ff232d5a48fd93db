// Cluster keys and ZeroMQ CURVE: who may connect, and as what.
//
// `lrts keygen DIR` makes a cluster directory: the server key pair (scheduler.key, used by the
// scheduler and the progress server), its public half (scheduler.pub, which every member needs),
// one key per role (worker.key, application.key, viewer.key) and `members`, the list of accepted
// public keys with each one's role and name. `--add NAME --role ROLE` makes a member directory
// DIR/NAME (scheduler.pub and ROLE.key) and accepts its key; `--revoke NAME` stops accepting it.
// Every file is 0600, every directory 0700.
//
// A daemon with --auth DIR listens with CURVE (encrypted, the server authenticated by its key)
// and answers ZeroMQ's authentication requests (ZAP) itself: a client key not in `members` gets
// no connection. The member's name becomes the connection's User-Id, so each message says who
// sent it (member_of); `members` is read again when it changes, so keys are added (rotation: two
// accepted at once) and revoked without a restart, and a revoked member's messages are dropped
// from then on, on connections it already had too.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/log_limit.hpp"
#include "common/result.hpp"
#include "net/zmq_socket.hpp"

namespace lrts::net {

// kAdmin: an operator's key — queries about every application, cancel and drain (lrts status,
// cancel, drain ...). A viewer queries everything and changes nothing.
// kRelay: an lrts relay's key — it carries workers' messages and vouches for the worker keys it
// accepted them with.
enum class Role : uint8_t { kWorker, kApplication, kViewer, kAdmin, kRelay };
std::string_view role_name(Role role);
std::optional<Role> parse_role(std::string_view text);

// A key as its file holds it (Z85 text, 40 characters each).
struct KeyPair {
  std::string name;
  std::string public_key;
  std::string secret_key;
};

// ---- lrts keygen ----
// Creates a cluster directory (it may exist, empty). Fails rather than overwrite keys.
Status create_cluster_keys(const std::string& dir);
// Adds a member key of `role`: DIR/NAME holds what the member needs. Returns that directory.
Result<std::string> add_member(const std::string& dir, const std::string& name, Role role);
// Stops accepting NAME's key(s). Daemons notice within a second.
Status revoke_member(const std::string& dir, const std::string& name);
// `members` as lines "ROLE NAME" for printing.
Result<std::vector<std::string>> list_members(const std::string& dir);

// ---- a member's side ----
struct ClientAuth {
  std::string server_public;  // Z85
  KeyPair keys;
  Role role = Role::kWorker;
};
// The keys for `role` in an --auth directory. A viewer uses viewer.key, or application.key when
// there is none (then it sees only that application's bars). An admin uses admin.key, or else
// viewer.key, or else application.key (then it may do what that key may).
Result<ClientAuth> load_client_auth(const std::string& dir, Role role);
// Sets CURVE on a socket before it connects.
void secure_client(ZmqSocket& socket, const ClientAuth& auth);

// A connecting socket whose CURVE handshake failed (its key refused, or the server's key is not
// the one it was given) is not retried by libzmq. The guard watches the socket's handshakes,
// says once what went wrong (then at most once a minute) and connects again with a growing
// delay (1 s to 30 s): a key added to `members` a moment late, or a scheduler back with the
// right key, is found. Polled by the owning loop, like ListenerGuard. Not thread-safe.
class HandshakeGuard {
 public:
  // `what` names the peer in messages ("the scheduler").
  HandshakeGuard(ZmqContext& ctx, ZmqSocket& socket, std::string endpoint, std::string what);
  HandshakeGuard(const HandshakeGuard&) = delete;
  HandshakeGuard& operator=(const HandshakeGuard&) = delete;
  void* monitor_socket() const { return monitor_.get(); }
  void on_readable(TimePoint now);
  void on_tick(TimePoint now);
  TimePoint next_deadline() const { return retry_at_; }
  uint64_t failures() const { return failures_; }
  // Whether a handshake has succeeded since the last disconnect, and since when the link has
  // been down (the guard's creation, when it never came up).
  bool link_up() const { return up_; }
  TimePoint down_since() const { return down_since_; }
  // Handshakes that succeeded after the first: each is a new connection (libzmq reconnected),
  // which the peer knows under a new routing id.
  uint64_t reconnects() const { return reconnects_; }

 private:
  ZmqSocket& socket_;
  std::string endpoint_;
  std::string what_;
  ZmqSocket monitor_;
  uint64_t failures_ = 0;
  uint32_t unanswered_ = 0;  // handshakes broken off in a row
  bool up_ = false;
  bool ever_up_ = false;
  uint64_t reconnects_ = 0;
  TimePoint down_since_;
  Duration backoff_ = seconds(1);
  TimePoint retry_at_ = TimePoint::max();
  LogLimiter log_limit_{seconds(60), 1, 4};
};

// ---- a daemon's side ----
struct Member {
  std::string name;
  Role role = Role::kWorker;
};

// The ZAP handler of one daemon, run by the daemon's own loop (like ListenerGuard): poll
// socket(), call on_readable() when it is readable and on_tick() at next_deadline(). Create it
// before the listening socket binds. Not thread-safe.
class Authenticator {
 public:
  // Reads DIR/scheduler.key and DIR/members; binds the context's ZAP endpoint.
  static Result<std::unique_ptr<Authenticator>> create(ZmqContext& ctx, const std::string& dir);
  ~Authenticator();
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // Makes `socket` a CURVE server with the cluster's key (call before bind).
  void secure_server(ZmqSocket& socket) const;
  void* socket() const { return zap_.get(); }
  // Answers waiting authentication requests.
  void on_readable(TimePoint now);
  // Reads `members` again when it changed.
  void on_tick(TimePoint now);
  TimePoint next_deadline() const { return next_check_; }

  // The member a received frame came from, or null when its key is no longer accepted (the
  // first drop of each member is logged). Frames from a connection made without CURVE do not
  // reach a secured socket.
  const Member* member_of(ZmqFrame& frame, TimePoint now);
  size_t members() const { return by_key_.size(); }

 private:
  Authenticator(ZmqContext& ctx, std::string dir, KeyPair server);
  Status reload();
  void answer(const std::vector<std::string>& request, TimePoint now);

  std::string dir_;
  KeyPair server_;
  ZmqSocket zap_;
  std::unordered_map<std::string, Member> by_key_;       // public key (Z85) -> member
  std::unordered_map<std::string, std::string> former_;  // revoked key -> its name then
  bool members_missing_ = false;
  int64_t members_mtime_ns_ = -1;
  int64_t members_size_ = -1;
  TimePoint next_check_ = TimePoint::max();
  LogLimiter log_limit_{seconds(60), 10, 4};
  LogLimiter revoked_log_{std::chrono::hours(1), 1, 1024};  // once per revoked key an hour
};

// Whether a bind address is loopback only (127.0.0.0/8, ::1, localhost).
bool is_loopback(const std::string& address);
// The check every listening daemon makes: a non-loopback address needs --auth, or --insecure.
Status check_exposure(const std::string& address, bool auth, bool insecure, const char* what);

}  // namespace lrts::net
