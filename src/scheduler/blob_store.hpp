// BlobStore: where the scheduler keeps payloads too large for its tables (fields and results
// above a batch's inline limit). With a journal they are files in the state directory — the
// scheduler holds a few chunks of each, never the whole payload, and a restart finds them where
// the journal says; without one they are kept in memory.
//
// BlobStreams adapts a store to one connection's incoming payload streams: each stream is
// written into a new blob, which the item naming the stream then takes over.
// Not thread-safe: the scheduler's loop owns them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/result.hpp"
#include "protocol/stream.hpp"

namespace lrts::scheduler {

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // A new blob of `size` bytes to be written in order; 0 when there is no room.
  virtual uint64_t create(uint64_t size) = 0;
  virtual bool append(uint64_t blob, std::string_view data) = 0;
  // Every byte is written (and, when the store syncs, on disk).
  virtual bool seal(uint64_t blob) = 0;
  virtual void remove(uint64_t blob) = 0;
  // Reads a sealed blob a piece at a time; null if it is missing.
  virtual std::unique_ptr<protocol::PayloadSource> open(uint64_t blob) = 0;
  virtual uint64_t size(uint64_t blob) const = 0;
  // After a restart: forgets every blob the journal does not name.
  virtual void retain_only(const std::unordered_set<uint64_t>& keep) = 0;
  virtual uint64_t bytes() const = 0;  // held now
};

class MemoryBlobStore final : public BlobStore {
 public:
  uint64_t create(uint64_t size) override;
  bool append(uint64_t blob, std::string_view data) override;
  bool seal(uint64_t blob) override;
  void remove(uint64_t blob) override;
  std::unique_ptr<protocol::PayloadSource> open(uint64_t blob) override;
  uint64_t size(uint64_t blob) const override;
  void retain_only(const std::unordered_set<uint64_t>& keep) override;
  uint64_t bytes() const override { return bytes_; }

 private:
  std::unordered_map<uint64_t, std::shared_ptr<std::string>> blobs_;
  uint64_t next_ = 1;
  uint64_t bytes_ = 0;
};

class FileBlobStore final : public BlobStore {
 public:
  // Blobs live in `dir` (created if missing); `sync` makes seal() fsync.
  static Result<std::unique_ptr<FileBlobStore>> open_dir(const std::string& dir, bool sync);
  ~FileBlobStore() override;
  uint64_t create(uint64_t size) override;
  bool append(uint64_t blob, std::string_view data) override;
  bool seal(uint64_t blob) override;
  void remove(uint64_t blob) override;
  std::unique_ptr<protocol::PayloadSource> open(uint64_t blob) override;
  uint64_t size(uint64_t blob) const override;
  void retain_only(const std::unordered_set<uint64_t>& keep) override;
  uint64_t bytes() const override { return bytes_; }

 private:
  FileBlobStore(std::string dir, bool sync) : dir_(std::move(dir)), sync_(sync) {}
  std::string path(uint64_t blob) const;
  std::string dir_;
  bool sync_;
  std::unordered_map<uint64_t, int> writing_;     // blob -> fd being written
  std::unordered_map<uint64_t, uint64_t> sizes_;  // every blob held
  uint64_t next_ = 0;
  uint64_t bytes_ = 0;
};

// One connection's incoming streams, each written into a blob of `store`.
class BlobStreams final : public protocol::StreamStorage {
 public:
  explicit BlobStreams(BlobStore& store) : store_(store) {}
  ~BlobStreams() override;
  bool begin(uint64_t stream, uint64_t total) override;
  bool write(uint64_t stream, std::string_view data) override;
  void end(uint64_t stream) override;
  void discard(uint64_t stream) override;
  // The blob a finished stream was written into (the caller owns it now); 0 if none.
  uint64_t take(uint64_t stream);

 private:
  BlobStore& store_;
  std::unordered_map<uint64_t, uint64_t> blobs_;  // stream -> blob
};

}  // namespace lrts::scheduler
