// How the scheduler names a peer that speaks to it through relays (lrts relay).
//
// A direct peer is its ZeroMQ routing id, which libzmq makes 5 bytes starting with a zero byte
// (a peer that sets its own may not start with zero). A relayed peer is
//
//   0x01, length of the relay's routing id (1 byte), that routing id, then 4 bytes (big-endian)
//   per relay on the way: the sub of the next hop, the last one the worker's.
//
// so one string names the whole path, and the scheduler's transport can wrap a message for it
// again. A direct peer whose own routing id starts with 0x01 is refused (it could pose as a
// relayed one).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lrts::protocol {

inline constexpr char kRelayedMark = '\x01';
inline constexpr size_t kMaxRelayDepth = 4;  // relays on one path

inline bool is_relayed(std::string_view peer) { return !peer.empty() && peer[0] == kRelayedMark; }

// The peer `sub` behind the relay `relay` (itself direct or relayed); nullopt past the depth
// limit or for a routing id too long to name.
inline std::optional<std::string> relayed_peer(std::string_view relay, uint32_t sub) {
  std::string out;
  if (is_relayed(relay)) {
    const size_t id_len = relay.size() >= 2 ? static_cast<uint8_t>(relay[1]) : 0;
    if (relay.size() < 2 + id_len || (relay.size() - 2 - id_len) / 4 >= kMaxRelayDepth) {
      return std::nullopt;
    }
    out.assign(relay);
  } else {
    if (relay.empty() || relay.size() > 255) return std::nullopt;
    out.push_back(kRelayedMark);
    out.push_back(static_cast<char>(relay.size()));
    out.append(relay);
  }
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(sub >> shift));
  return out;
}

// A relayed peer taken apart: the routing id of the first relay, and the subs on the way.
struct RelayPath {
  std::string_view relay;
  std::vector<uint32_t> subs;
};

inline std::optional<RelayPath> relay_path(std::string_view peer) {
  if (!is_relayed(peer) || peer.size() < 2) return std::nullopt;
  const size_t id_len = static_cast<uint8_t>(peer[1]);
  if (id_len == 0 || peer.size() < 2 + id_len) return std::nullopt;
  const std::string_view rest = peer.substr(2 + id_len);
  if (rest.empty() || rest.size() % 4 != 0) return std::nullopt;
  RelayPath path{peer.substr(2, id_len), {}};
  for (size_t i = 0; i < rest.size(); i += 4) {
    uint32_t sub = 0;
    for (size_t b = 0; b < 4; ++b) sub = (sub << 8) | static_cast<uint8_t>(rest[i + b]);
    path.subs.push_back(sub);
  }
  return path;
}

// The relay a relayed peer speaks through (as the scheduler names that relay), or empty.
inline std::string relay_of(std::string_view peer) {
  auto path = relay_path(peer);
  if (!path) return {};
  if (path->subs.size() == 1) return std::string(path->relay);
  return std::string(peer.substr(0, peer.size() - 4));
}

}  // namespace lrts::protocol
