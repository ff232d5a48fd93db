// The slot socket's framing on arbitrary bytes, read in arbitrary pieces: frames are found or
// refused, never misread, and what they carry goes through the slot decoders.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string_view>

#include "protocol/codec.hpp"
#include "protocol/framing.hpp"
#include "protocol/slot_messages.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  // The first byte sets the size of the pieces the bytes arrive in.
  const size_t piece = 1 + data[0] % 64;
  lrts::protocol::FrameBuffer frames(1u << 16);
  bool broken = false;
  for (size_t at = 1; at < size && !broken; at += piece) {
    const size_t n = std::min(piece, size - at);
    if (::write(sv[1], data + at, n) != static_cast<ssize_t>(n)) break;
    if (frames.read_from(sv[0]) <= 0) break;
    std::string_view body;
    for (;;) {
      auto got = frames.next(&body);
      if (!got) {
        broken = true;  // refused: the slot closes the connection
        break;
      }
      if (!*got) break;
      (void)lrts::protocol::decode<lrts::protocol::ToSlot>(body, 1u << 16);
      (void)lrts::protocol::decode<lrts::protocol::FromSlot>(body, 1u << 16);
      if (body.size() >= lrts::protocol::kLargeFrameBytes) (void)frames.take_large();
    }
  }
  ::close(sv[0]);
  ::close(sv[1]);
  return 0;
}
