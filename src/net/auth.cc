#include "net/auth.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/log.hpp"
#include "common/unique_fd.hpp"

namespace lrts::net {

namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kServerKey = "scheduler.key";
constexpr const char* kServerPublic = "scheduler.pub";
constexpr const char* kMembers = "members";
constexpr size_t kZ85KeyChars = 40;
constexpr size_t kMaxMemberName = 64;

std::string errno_text() { return std::strerror(errno); }

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxMemberName || name == "scheduler") return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return name != "." && name != "..";
}

bool valid_z85_key(std::string_view key) {
  if (key.size() != kZ85KeyChars) return false;
  uint8_t bin[32];
  const std::string copy(key);
  return zmq_z85_decode(bin, copy.c_str()) != nullptr;
}

Status make_private_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error("cannot create " + dir + ": " + errno_text());
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return make_error(dir + " is not a directory");
  }
  ::chmod(dir.c_str(), 0700);
  return {};
}

// Writes a new 0600 file; fails if it exists (keys are never overwritten).
Status write_new_file(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return make_error(errno == EEXIST ? path + " exists already (keys are never overwritten)"
                                      : "cannot create " + path + ": " + errno_text());
  }
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd.get()) != 0) {
    return make_error("cannot write " + path + ": " + errno_text());
  }
  return {};
}

// Replaces a file atomically (a daemon reading it sees the old or the new one whole).
Status replace_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".new";
  ::unlink(tmp.c_str());
  if (auto s = write_new_file(tmp, text); !s) return s;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return make_error("cannot replace " + path + ": " + errno_text());
  }
  return {};
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("cannot read " + path + ": " + errno_text());
  std::ostringstream s;
  s << in.rdbuf();
  if (s.str().size() > (1u << 20)) return make_error(path + " is too large to be a key file");
  return s.str();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// "key = value" lines; '#' starts a comment.
std::unordered_map<std::string, std::string> parse_fields(std::string_view text) {
  std::unordered_map<std::string, std::string> out;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    out[std::string(trim(line.substr(0, eq)))] = std::string(trim(line.substr(eq + 1)));
  }
  return out;
}

std::string key_file_text(const KeyPair& k, std::string_view role) {
  return "# lrts " + std::string(role) + " key '" + k.name +
         "': keep this file secret, it holds a secret key\n"
         "name = " +
         k.name + "\nrole = " + std::string(role) + "\npublic = " + k.public_key +
         "\nsecret = " + k.secret_key + "\n";
}

std::string public_file_text(const KeyPair& server) {
  return "# lrts scheduler public key: every member of the cluster needs this file\npublic = " +
         server.public_key + "\n";
}

Result<KeyPair> new_key(const std::string& name) {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return make_error("cannot make a CURVE key: " + zmq_error_text() +
                      " (libzmq built without CURVE?)");
  }
  return KeyPair{name, pub, sec};
}

Result<KeyPair> read_key(const std::string& path, bool need_secret) {
  auto text = read_file(path);
  if (!text) return Error{text.error()};
  auto f = parse_fields(*text);
  KeyPair k{f["name"], f["public"], f["secret"]};
  if (need_secret) {
    if (!valid_z85_key(k.secret_key)) return make_error(path + " holds no valid secret key");
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      LRTS_WARN("{} can be read by other users (mode {:o}): chmod 600 it", path, st.st_mode & 0777);
    }
    char pub[41];
    if (zmq_curve_public(pub, k.secret_key.c_str()) != 0) {
      return make_error(path + ": cannot derive the public key: " + zmq_error_text());
    }
    k.public_key = pub;  // derived: a hand-edited public line cannot disagree
  } else if (!valid_z85_key(k.public_key)) {
    return make_error(path + " holds no valid public key");
  }
  return k;
}

struct MemberLine {
  Role role;
  std::string name;
  std::string public_key;
};

Result<std::vector<MemberLine>> read_members(const std::string& path) {
  auto text = read_file(path);
  if (!text) return Error{text.error()};
  std::vector<MemberLine> out;
  std::istringstream in(*text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const std::string_view t = trim(line);
    if (t.empty() || t.front() == '#') continue;
    std::istringstream fields{std::string(t)};
    std::string role, name, key;
    fields >> role >> name >> key;
    const auto r = parse_role(role);
    if (!r || !valid_name(name) || !valid_z85_key(key)) {
      return make_error(path + " line " + std::to_string(n) +
                        ": expected 'worker|application|viewer|admin|relay NAME PUBLIC_KEY'");
    }
    out.push_back({*r, name, key});
  }
  return out;
}

std::string members_text(const std::vector<MemberLine>& members) {
  std::string out =
      "# lrts cluster members: ROLE NAME PUBLIC_KEY, one per line. The scheduler and the "
      "progress\n# server read this file again within a second of a change.\n";
  for (const auto& m : members) {
    out += std::string(role_name(m.role)) + " " + m.name + " " + m.public_key + "\n";
  }
  return out;
}

void set_key(ZmqSocket& s, int option, const std::string& z85) {
  zmq_setsockopt(s.get(), option, z85.data(), z85.size());
}

}  // namespace

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kWorker:
      return "worker";
    case Role::kApplication:
      return "application";
    case Role::kViewer:
      return "viewer";
    case Role::kAdmin:
      return "admin";
    case Role::kRelay:
      return "relay";
  }
  return "?";
}

std::optional<Role> parse_role(std::string_view text) {
  for (Role r : {Role::kWorker, Role::kApplication, Role::kViewer, Role::kAdmin, Role::kRelay}) {
    if (text == role_name(r)) return r;
  }
  return std::nullopt;
}

// ---- lrts keygen ----------------------------------------------------------------------------

Status create_cluster_keys(const std::string& dir) {
  if (zmq_has("curve") == 0) return make_error("this libzmq was built without CURVE");
  if (::access((dir + "/" + kServerKey).c_str(), F_OK) == 0) {
    return make_error(dir +
                      " holds cluster keys already (add a member with --add NAME --role "
                      "ROLE, or choose another directory)");
  }
  if (auto s = make_private_dir(dir); !s) return s;
  auto server = new_key("scheduler");
  if (!server) return Error{server.error()};
  if (auto s = write_new_file(dir + "/" + kServerKey, key_file_text(*server, "server")); !s) {
    return s;
  }
  if (auto s = write_new_file(dir + "/" + kServerPublic, public_file_text(*server)); !s) return s;
  std::vector<MemberLine> members;
  for (Role r : {Role::kWorker, Role::kApplication, Role::kViewer, Role::kAdmin, Role::kRelay}) {
    auto k = new_key(std::string(role_name(r)));
    if (!k) return Error{k.error()};
    const std::string path = dir + "/" + std::string(role_name(r)) + ".key";
    if (auto s = write_new_file(path, key_file_text(*k, role_name(r))); !s) return s;
    members.push_back({r, k->name, k->public_key});
  }
  return write_new_file(dir + "/" + kMembers, members_text(members));
}

Result<std::string> add_member(const std::string& dir, const std::string& name, Role role) {
  if (!valid_name(name)) {
    return make_error("invalid member name '" + name +
                      "': 1 to 64 of A-Z a-z 0-9 . _ -, not 'scheduler'");
  }
  auto server = read_key(dir + "/" + kServerKey, true);
  if (!server) return Error{server.error()};
  auto members = read_members(dir + "/" + kMembers);
  if (!members) return Error{members.error()};
  for (const auto& m : *members) {
    if (m.name == name) return make_error("a member named '" + name + "' exists already");
  }
  const std::string out = dir + "/" + name;
  if (::mkdir(out.c_str(), 0700) != 0) {
    return make_error("cannot create " + out + ": " + errno_text());
  }
  auto k = new_key(name);
  if (!k) return Error{k.error()};
  if (auto s = write_new_file(out + "/" + std::string(role_name(role)) + ".key",
                              key_file_text(*k, role_name(role)));
      !s) {
    return Error{s.error()};
  }
  if (auto s = write_new_file(out + "/" + kServerPublic, public_file_text(*server)); !s) {
    return Error{s.error()};
  }
  members->push_back({role, name, k->public_key});
  if (auto s = replace_file(dir + "/" + kMembers, members_text(*members)); !s) {
    return Error{s.error()};
  }
  return out;
}

Status revoke_member(const std::string& dir, const std::string& name) {
  auto members = read_members(dir + "/" + kMembers);
  if (!members) return Error{members.error()};
  const size_t before = members->size();
  std::erase_if(*members, [&](const MemberLine& m) { return m.name == name; });
  if (members->size() == before) return make_error("no member named '" + name + "'");
  return replace_file(dir + "/" + kMembers, members_text(*members));
}

Result<std::vector<std::string>> list_members(const std::string& dir) {
  auto members = read_members(dir + "/" + kMembers);
  if (!members) return Error{members.error()};
  std::vector<std::string> out;
  for (const auto& m : *members) out.push_back(std::string(role_name(m.role)) + " " + m.name);
  return out;
}

// ---- members ----------------------------------------------------------------------------------

Result<ClientAuth> load_client_auth(const std::string& dir, Role role) {
  if (zmq_has("curve") == 0) return make_error("this libzmq was built without CURVE");
  ClientAuth a;
  a.role = role;
  std::string path = dir + "/" + std::string(role_name(role)) + ".key";
  const auto fall_back = [&](Role to) {
    if (::access(path.c_str(), F_OK) == 0) return;
    path = dir + "/" + std::string(role_name(to)) + ".key";
    a.role = to;
  };
  if (role == Role::kAdmin) fall_back(Role::kViewer);
  if (role == Role::kViewer || role == Role::kAdmin) fall_back(Role::kApplication);
  if (::access(path.c_str(), F_OK) != 0) {
    return make_error("--auth " + dir + " has no " + std::string(role_name(role)) +
                      ".key (make one with: lrts keygen CLUSTER_DIR --add NAME --role " +
                      std::string(role_name(role)) + ")");
  }
  auto keys = read_key(path, true);
  if (!keys) return Error{keys.error()};
  auto server = read_key(dir + "/" + kServerPublic, false);
  if (!server) return Error{server.error()};
  a.keys = std::move(*keys);
  a.server_public = server->public_key;
  return a;
}

void secure_client(ZmqSocket& socket, const ClientAuth& auth) {
  set_key(socket, ZMQ_CURVE_SERVERKEY, auth.server_public);
  set_key(socket, ZMQ_CURVE_PUBLICKEY, auth.keys.public_key);
  set_key(socket, ZMQ_CURVE_SECRETKEY, auth.keys.secret_key);
}

// ---- handshakes -------------------------------------------------------------------------------

HandshakeGuard::HandshakeGuard(ZmqContext& ctx, ZmqSocket& socket, std::string endpoint,
                               std::string what)
    : socket_(socket),
      endpoint_(std::move(endpoint)),
      what_(std::move(what)),
      down_since_(Clock::now()) {
  monitor_ = open_monitor(
      ctx, socket,
      ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
          ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED);
}

void HandshakeGuard::on_readable(TimePoint now) {
  while (const auto e = read_monitor_event(monitor_)) {
    const uint16_t kind = e->kind;
    if (kind == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      backoff_ = seconds(1);
      unanswered_ = 0;
      up_ = true;
      if (ever_up_) ++reconnects_;
      ever_up_ = true;
      continue;
    }
    if (kind == ZMQ_EVENT_DISCONNECTED) {
      if (up_) down_since_ = now;
      up_ = false;
      continue;
    }
    ++failures_;
    // The connection broke during the handshake: libzmq reconnects by itself. Once is a peer
    // that went away; again and again is a server that cannot read us (another server key).
    const bool broken = kind == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    if (broken && ++unanswered_ < 3) continue;
    if (!broken && retry_at_ == TimePoint::max()) retry_at_ = now + backoff_;
    uint64_t suppressed = 0;
    if (log_limit_.allow("fail", now, &suppressed)) {
      int mechanism = 0;
      size_t len = sizeof mechanism;
      zmq_getsockopt(socket_.get(), ZMQ_MECHANISM, &mechanism, &len);
      std::string why = what_;
      if (kind == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        why += " refused this key (is it in the cluster's `members`? lrts keygen DIR --list)";
      } else if (mechanism == ZMQ_CURVE) {
        why +=
            " did not complete a secure handshake (is scheduler.pub the cluster's, and does "
            "it run with --auth?)";
      } else {
        why += " did not complete a handshake (if it runs with --auth, give --auth here too)";
      }
      if (broken) {
        LRTS_ERROR("{} at {}; trying again", why, endpoint_);
      } else {
        LRTS_ERROR("{} at {}; trying again in {} s", why, endpoint_, to_ms(backoff_) / 1000);
      }
    }
  }
}

void HandshakeGuard::on_tick(TimePoint now) {
  if (now < retry_at_) return;
  retry_at_ = TimePoint::max();
  (void)socket_.disconnect(endpoint_);
  (void)socket_.connect(endpoint_);
  backoff_ = std::min<Duration>(backoff_ * 2, seconds(30));
}

// ---- the daemon's side ------------------------------------------------------------------------

Authenticator::Authenticator(ZmqContext& ctx, std::string dir, KeyPair server)
    : dir_(std::move(dir)), server_(std::move(server)), zap_(ctx, ZMQ_REP) {}

Authenticator::~Authenticator() = default;

Result<std::unique_ptr<Authenticator>> Authenticator::create(ZmqContext& ctx,
                                                             const std::string& dir) {
  if (zmq_has("curve") == 0) return make_error("this libzmq was built without CURVE");
  auto server = read_key(dir + "/" + kServerKey, true);
  if (!server) {
    return make_error("--auth " + dir + ": " + server.error() +
                      " (the scheduler and the progress server need the cluster directory "
                      "made by lrts keygen)");
  }
  // As sshd does: keys that others could read, or a list others could write, are refused.
  for (const auto& [path, mask, what] : {std::tuple{dir, mode_t{022}, "writable by"},
                                         {dir + "/" + kServerKey, 077, "open to"},
                                         {dir + "/" + kMembers, 022, "writable by"}}) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & mask) != 0) {
      return make_error(path + " is " + what + " other users (mode " +
                        std::to_string((st.st_mode >> 6) & 7) +
                        std::to_string((st.st_mode >> 3) & 7) + std::to_string(st.st_mode & 7) +
                        "): chmod go-rwx it");
    }
  }
  std::unique_ptr<Authenticator> a(new Authenticator(ctx, dir, std::move(*server)));
  if (auto s = a->reload(); !s) return Error{s.error()};
  if (auto s = a->zap_.bind(kZapEndpoint); !s) return Error{s.error()};
  a->next_check_ = Clock::now() + seconds(1);
  return a;
}

void Authenticator::secure_server(ZmqSocket& socket) const {
  socket.set_int(ZMQ_CURVE_SERVER, 1);
  set_key(socket, ZMQ_CURVE_SECRETKEY, server_.secret_key);
  const char domain[] = "lrts";
  zmq_setsockopt(socket.get(), ZMQ_ZAP_DOMAIN, domain, sizeof domain - 1);
}

Status Authenticator::reload() {
  const std::string path = dir_ + "/" + kMembers;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return make_error("cannot read " + path + ": " + errno_text());
  members_mtime_ns_ = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  members_size_ = st.st_size;
  if ((st.st_mode & 022) != 0) {
    return make_error(path + " is writable by other users: chmod go-w it");
  }
  auto lines = read_members(path);
  if (!lines) return Error{lines.error()};
  // By the key itself (its Z85 text is the connection's User-Id): a revoked key stays revoked
  // even when its name is given to another key later.
  std::unordered_map<std::string, Member> by_key;
  for (const auto& m : *lines) by_key[m.public_key] = Member{m.name, m.role};
  for (const auto& [key, m] : by_key_) {
    if (!by_key.count(key)) former_[key] = m.name;
  }
  by_key_ = std::move(by_key);
  return {};
}

void Authenticator::on_tick(TimePoint now) {
  if (now < next_check_) return;
  next_check_ = now + seconds(1);
  struct stat st {};
  const std::string path = dir_ + "/" + kMembers;
  if (::stat(path.c_str(), &st) != 0) {
    if (!members_missing_) {
      LRTS_WARN("cannot read {}: {}; keeping the accepted keys as they were", path, errno_text());
    }
    members_missing_ = true;
    return;
  }
  members_missing_ = false;
  const int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  if (mtime == members_mtime_ns_ && st.st_size == members_size_) return;
  const size_t before = by_key_.size();
  if (auto s = reload(); !s) {
    LRTS_WARN("keeping the accepted keys as they were: {}", s.error());
    return;
  }
  LRTS_INFO("{} changed: {} accepted key(s), were {}", path, by_key_.size(), before);
}

void Authenticator::on_readable(TimePoint now) {
  for (int n = 0; n < 1024; ++n) {
    std::vector<std::string> request;
    ZmqFrame f;
    if (!zap_.recv(f)) return;
    request.emplace_back(f.view());
    while (f.more()) {
      ZmqFrame next;
      if (!zap_.recv(next)) break;
      request.emplace_back(next.view());
      if (!next.more()) break;
    }
    answer(request, now);
  }
}

void Authenticator::answer(const std::vector<std::string>& req, TimePoint now) {
  // ZAP 1.0: version, request id, domain, address, routing id, mechanism, credentials...
  const std::string none;
  const std::string& request_id = req.size() > 1 ? req[1] : none;
  const std::string& address = req.size() > 3 ? req[3] : none;
  const Member* m = nullptr;
  char z85[41] = {0};
  if (req.size() >= 7 && req[0] == "1.0" && req[5] == "CURVE" && req[6].size() == 32 &&
      zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(req[6].data()), 32)) {
    auto it = by_key_.find(z85);
    if (it != by_key_.end()) m = &it->second;
  }
  if (!m) {
    uint64_t suppressed = 0;
    // One limit for all addresses: an attacker with many cannot fill the disk either.
    if (log_limit_.allow("refused", now, &suppressed)) {
      LRTS_WARN("refused a connection from {}: its key is not a member of the cluster{}",
                address.empty() ? "an unknown address" : address,
                suppressed ? " (" + std::to_string(suppressed) + " more refusals not logged)" : "");
    }
  }
  zap_.send("1.0", true);
  zap_.send(request_id, true);
  zap_.send(m ? "200" : "400", true);
  zap_.send(m ? "OK" : "unknown key", true);
  zap_.send(m ? std::string_view(z85, 40) : std::string_view{}, true);
  zap_.send("", false);
}

const Member* Authenticator::member_of(ZmqFrame& frame, TimePoint now) {
  const char* user = zmq_msg_gets(frame.raw(), "User-Id");
  if (!user) return nullptr;
  auto it = by_key_.find(user);
  if (it != by_key_.end()) return &it->second;
  uint64_t suppressed = 0;
  if (revoked_log_.allow(user, now, &suppressed)) {
    auto f = former_.find(user);
    LRTS_WARN("dropping messages from '{}': its key is no longer accepted",
              f == former_.end() ? std::string(user) : f->second);
  }
  return nullptr;
}

// ---- exposure -------------------------------------------------------------------------------

bool is_loopback(const std::string& address) {
  if (address == "localhost") return true;
  if (address == "*" || address.empty()) return false;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(address.c_str(), nullptr, &hints, &res) != 0 || !res) return false;
  bool all = true;
  for (addrinfo* p = res; p; p = p->ai_next) {
    if (p->ai_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(p->ai_addr);
      all = all && (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (p->ai_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(p->ai_addr);
      all = all && IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    } else {
      all = false;
    }
  }
  ::freeaddrinfo(res);
  return all;
}

Status check_exposure(const std::string& address, bool auth, bool insecure, const char* what) {
  if (auth || is_loopback(address)) return {};
  if (!insecure) {
    return make_error(
        std::string("refusing to listen on '") + address + "' without --auth: " +
        "it is not a loopback address, and anyone who can reach the " + what + " could " +
        (std::string(what) == "scheduler" ? "run tasks and read results"
                                          : "read every progress bar and send false ones") +
        ". Give --auth DIR (keys from lrts keygen "
        "DIR), or --insecure to listen without authentication anyway");
  }
  LRTS_WARN(
      "*** INSECURE: the {} listens on '{}' without --auth: anyone who can reach it can register "
      "workers, submit tasks, read every result and progress bar. Use --auth DIR (lrts keygen) "
      "outside a trusted network. ***",
      what, address);
  return {};
}

}  // namespace lrts::net
