#include "scheduler/blob_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "common/log.hpp"

namespace lrts::scheduler {

namespace {

class StringSource final : public protocol::PayloadSource {
 public:
  explicit StringSource(std::shared_ptr<std::string> s) : s_(std::move(s)) {}
  uint64_t size() const override { return s_->size(); }
  std::string_view read(uint64_t offset, size_t len, std::string&) override {
    return std::string_view(*s_).substr(offset, len);
  }

 private:
  std::shared_ptr<std::string> s_;  // kept even if the blob is removed meanwhile
};

class FileSource final : public protocol::PayloadSource {
 public:
  FileSource(int fd, uint64_t size) : fd_(fd), size_(size) {}
  ~FileSource() override { ::close(fd_); }
  uint64_t size() const override { return size_; }
  std::string_view read(uint64_t offset, size_t len, std::string& scratch) override {
    scratch.resize(len);
    size_t got = 0;
    while (got < len) {
      const ssize_t n =
          ::pread(fd_, scratch.data() + got, len - got, static_cast<off_t>(offset + got));
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        break;  // the file shrank: the receiver sees a short stream and it is sent again
      }
      got += static_cast<size_t>(n);
    }
    scratch.resize(got);
    return scratch;
  }

 private:
  int fd_;
  uint64_t size_;
};

}  // namespace

// ---- memory -----------------------------------------------------------------------------------

uint64_t MemoryBlobStore::create(uint64_t size) {
  auto s = std::make_shared<std::string>();
  try {
    s->reserve(static_cast<size_t>(size));
  } catch (const std::bad_alloc&) {
    return 0;
  }
  const uint64_t id = next_++;
  blobs_.emplace(id, std::move(s));
  return id;
}

bool MemoryBlobStore::append(uint64_t blob, std::string_view data) {
  auto it = blobs_.find(blob);
  if (it == blobs_.end()) return false;
  it->second->append(data);
  bytes_ += data.size();
  return true;
}

bool MemoryBlobStore::seal(uint64_t blob) { return blobs_.count(blob) != 0; }

void MemoryBlobStore::remove(uint64_t blob) {
  auto it = blobs_.find(blob);
  if (it == blobs_.end()) return;
  bytes_ -= it->second->size();
  blobs_.erase(it);
}

std::unique_ptr<protocol::PayloadSource> MemoryBlobStore::open(uint64_t blob) {
  auto it = blobs_.find(blob);
  if (it == blobs_.end()) return nullptr;
  return std::make_unique<StringSource>(it->second);
}

uint64_t MemoryBlobStore::size(uint64_t blob) const {
  auto it = blobs_.find(blob);
  return it == blobs_.end() ? 0 : it->second->size();
}

void MemoryBlobStore::retain_only(const std::unordered_set<uint64_t>& keep) {
  std::erase_if(blobs_, [&](const auto& e) {
    if (keep.count(e.first)) return false;
    bytes_ -= e.second->size();
    return true;
  });
}

// ---- files ------------------------------------------------------------------------------------

Result<std::unique_ptr<FileBlobStore>> FileBlobStore::open_dir(const std::string& dir, bool sync) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error("cannot create " + dir + ": " + ec.message());
  std::unique_ptr<FileBlobStore> store(new FileBlobStore(dir, sync));
  // The blobs already there (from before a restart), by name.
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      char* end = nullptr;
      const uint64_t id = std::strtoull(e->d_name, &end, 16);
      if (!id || !end || *end || std::strlen(e->d_name) != 16) continue;
      struct stat st {};
      if (::stat(store->path(id).c_str(), &st) == 0) {
        store->sizes_[id] = static_cast<uint64_t>(st.st_size);
        store->bytes_ += static_cast<uint64_t>(st.st_size);
      }
    }
    ::closedir(d);
  }
  std::random_device rd;
  store->next_ = (uint64_t{rd()} << 32) | 1;  // unique across restarts in practice
  return store;
}

FileBlobStore::~FileBlobStore() {
  for (const auto& [id, fd] : writing_) ::close(fd);
}

std::string FileBlobStore::path(uint64_t blob) const {
  char name[24];
  std::snprintf(name, sizeof name, "%016" PRIx64, blob);
  return dir_ + "/" + name;
}

uint64_t FileBlobStore::create(uint64_t size) {
  uint64_t id;
  do {
    id = next_++;
  } while (id == 0 || sizes_.count(id));
  const int fd = ::open(path(id).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    LRTS_ERROR("cannot create a payload file in {}: {}", dir_, std::strerror(errno));
    return 0;
  }
  writing_.emplace(id, fd);
  sizes_.emplace(id, 0);
  (void)size;
  return id;
}

bool FileBlobStore::append(uint64_t blob, std::string_view data) {
  auto it = writing_.find(blob);
  if (it == writing_.end()) return false;
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(it->second, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      LRTS_ERROR("cannot write a payload file in {}: {}", dir_, std::strerror(errno));
      return false;
    }
    done += static_cast<size_t>(n);
  }
  sizes_[blob] += data.size();
  bytes_ += data.size();
  return true;
}

bool FileBlobStore::seal(uint64_t blob) {
  auto it = writing_.find(blob);
  if (it == writing_.end()) return sizes_.count(blob) != 0;
  const bool ok = !sync_ || ::fsync(it->second) == 0;
  ::close(it->second);
  writing_.erase(it);
  return ok;
}

void FileBlobStore::remove(uint64_t blob) {
  if (auto it = writing_.find(blob); it != writing_.end()) {
    ::close(it->second);
    writing_.erase(it);
  }
  auto s = sizes_.find(blob);
  if (s == sizes_.end()) return;
  bytes_ -= s->second;
  sizes_.erase(s);
  ::unlink(path(blob).c_str());
}

std::unique_ptr<protocol::PayloadSource> FileBlobStore::open(uint64_t blob) {
  auto s = sizes_.find(blob);
  if (s == sizes_.end()) return nullptr;
  const int fd = ::open(path(blob).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  return std::make_unique<FileSource>(fd, s->second);
}

uint64_t FileBlobStore::size(uint64_t blob) const {
  auto s = sizes_.find(blob);
  return s == sizes_.end() ? 0 : s->second;
}

void FileBlobStore::retain_only(const std::unordered_set<uint64_t>& keep) {
  std::vector<uint64_t> drop;
  for (const auto& [id, size] : sizes_) {
    if (!keep.count(id)) drop.push_back(id);
  }
  for (uint64_t id : drop) remove(id);
  if (!drop.empty()) LRTS_INFO("removed {} payload file(s) no task refers to", drop.size());
}

// ---- streams into blobs -----------------------------------------------------------------------

BlobStreams::~BlobStreams() {
  for (const auto& [stream, blob] : blobs_) store_.remove(blob);
}

bool BlobStreams::begin(uint64_t stream, uint64_t total) {
  discard(stream);
  const uint64_t blob = store_.create(total);
  if (!blob) return false;
  blobs_.emplace(stream, blob);
  return true;
}

bool BlobStreams::write(uint64_t stream, std::string_view data) {
  auto it = blobs_.find(stream);
  return it != blobs_.end() && store_.append(it->second, data);
}

void BlobStreams::end(uint64_t stream) {
  auto it = blobs_.find(stream);
  if (it != blobs_.end()) store_.seal(it->second);
}

void BlobStreams::discard(uint64_t stream) {
  auto it = blobs_.find(stream);
  if (it == blobs_.end()) return;
  store_.remove(it->second);
  blobs_.erase(it);
}

uint64_t BlobStreams::take(uint64_t stream) {
  auto it = blobs_.find(stream);
  if (it == blobs_.end()) return 0;
  const uint64_t blob = it->second;
  blobs_.erase(it);
  return blob;
}

}  // namespace lrts::scheduler
