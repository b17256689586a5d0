#include "ftte/core/frozen_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "ftte/core/check.h"
#include "ftte/core/safetensors.h"

namespace ftte {

namespace {

// FNV-1a over the bytes: a checksum, not a defence against an attacker who can write the file.
uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// The mask as text: per parameter, its trainable runs ("3.weight:0-8,12-16;...").
std::string MaskText(const Model& model) {
  std::string s;
  for (const Parameter* p : model.params()) {
    s += p->name() + ":";
    for (const RowRun& r : p->runs()) {
      s += std::to_string(r.begin) + "-" + std::to_string(r.end) + ",";
    }
    s += ";";
  }
  return s;
}

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

Status WriteFrozenRows(const Model& model, const std::string& path) {
  std::vector<TensorRecord> records;
  std::vector<std::vector<int8_t>> q;
  std::vector<std::vector<float>> scales;
  q.reserve(model.params().size());
  scales.reserve(model.params().size());
  uint64_t checksum = 1469598103934665603ull;
  std::vector<float> row;
  for (const Parameter* p : model.params()) {
    if (!p->QuantizedUnder(FrozenStorage::kInt8Mapped)) continue;
    if (p->quantized()) {
      return FailedPrecondition(path + ": " + p->name() +
                                " is int8-stored already; write the frozen rows from float32");
    }
    const int64_t rs = p->row_size(), frozen = p->rows() - p->trainable_rows();
    q.emplace_back(static_cast<size_t>(frozen * rs));
    scales.emplace_back(static_cast<size_t>(frozen));
    row.resize(static_cast<size_t>(rs));
    int64_t f = 0;
    for (int64_t r = 0; r < p->rows(); ++r) {
      if (p->row_trainable(r)) continue;
      p->ReadRows(r, r + 1, row.data());
      scales.back()[f] = QuantizeRowInt8(row.data(), rs, q.back().data() + f * rs);
      ++f;
    }
    records.push_back(
        {p->name() + ".q", DType::kI8, {frozen, rs}, q.back().data(), q.back().size()});
    records.push_back({p->name() + ".scale",
                       DType::kF32,
                       {frozen},
                       scales.back().data(),
                       scales.back().size() * sizeof(float)});
  }
  if (records.empty()) {
    return InvalidArgument(path + ": " + model.name() +
                           " has no frozen rows that int8 may hold under this mask; nothing to "
                           "map (use --frozen int8 or float32)");
  }
  // The checksum covers the tensors in name order (the order Open walks them in).
  std::map<std::string, const TensorRecord*> by_name;
  for (const TensorRecord& r : records) by_name.emplace(r.name, &r);
  for (const auto& [name, r] : by_name) {
    checksum ^= Fnv1a(static_cast<const uint8_t*>(r->data), r->bytes) + name.size();
  }
  return WriteSafetensors(
      path, records,
      {{"ftte.model", model.name()},
       {"ftte.mask", std::to_string(Fnv1a(reinterpret_cast<const uint8_t*>(MaskText(model).data()),
                                          MaskText(model).size()))},
       {"ftte.checksum", std::to_string(checksum)}});
}

Result<std::unique_ptr<MappedFrozenRows>> MappedFrozenRows::Open(const std::string& path,
                                                                 const Model& model) {
  std::unique_ptr<MappedFrozenRows> m(new MappedFrozenRows());
  m->path_ = path;
  m->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (m->fd_ < 0) {
    const std::string why = std::strerror(errno);
    if (errno == ENOENT) return NotFound(path + ": no such file; write it with the model first");
    return IoError(path + ": cannot open: " + why);
  }
  struct stat st {};
  if (::fstat(m->fd_, &st) != 0) return IoError(path + ": cannot stat: " + std::strerror(errno));
  m->size_ = static_cast<size_t>(st.st_size);
  m->dev_ = st.st_dev;
  m->ino_ = st.st_ino;
  m->mtime_ns_ = MtimeNs(st);
  if (m->size_ == 0) return DataLoss(path + ": the file is empty; write it again");
  m->base_ = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, m->fd_, 0);
  if (m->base_ == MAP_FAILED) {
    m->base_ = nullptr;
    return IoError(path + ": cannot map: " + std::strerror(errno));
  }
  const auto* bytes = static_cast<const uint8_t*>(m->base_);
  FTTE_ASSIGN_OR_RETURN(SafetensorsIndex index, IndexSafetensors(bytes, m->size_, path));
  const std::string rewrite = "; write the frozen rows again for this model and mask";
  auto meta = [&](const std::string& key) {
    auto it = index.metadata.find(key);
    return it == index.metadata.end() ? std::string() : it->second;
  };
  if (meta("ftte.model") != model.name()) {
    return InvalidArgument(path + ": frozen rows of model '" + meta("ftte.model") + "', not '" +
                           model.name() + "'" + rewrite);
  }
  const std::string mask = MaskText(model);
  if (meta("ftte.mask") !=
      std::to_string(Fnv1a(reinterpret_cast<const uint8_t*>(mask.data()), mask.size()))) {
    return InvalidArgument(path + ": written for another trainable mask of " + model.name() +
                           rewrite);
  }
  uint64_t checksum = 1469598103934665603ull;
  for (const auto& [name, t] : index.tensors) {
    checksum ^= Fnv1a(bytes + t.offset, t.bytes) + name.size();
  }
  if (meta("ftte.checksum") != std::to_string(checksum)) {
    return DataLoss(path + ": the checksum does not match the contents (a damaged or edited file)" +
                    rewrite);
  }
  for (const Parameter* p : model.params()) {
    if (!p->QuantizedUnder(FrozenStorage::kInt8Mapped)) continue;
    const int64_t frozen = p->rows() - p->trainable_rows();
    auto q = index.tensors.find(p->name() + ".q");
    auto s = index.tensors.find(p->name() + ".scale");
    if (q == index.tensors.end() || s == index.tensors.end() || q->second.dtype != DType::kI8 ||
        s->second.dtype != DType::kF32 ||
        q->second.shape != std::vector<int64_t>{frozen, p->row_size()} ||
        s->second.shape != std::vector<int64_t>{frozen}) {
      return InvalidArgument(path + ": no int8 rows of the right shape for " + p->name() + rewrite);
    }
    m->rows_.push_back({p->name(), reinterpret_cast<const int8_t*>(bytes + q->second.offset),
                        reinterpret_cast<const float*>(bytes + s->second.offset)});
  }
  return m;
}

MappedFrozenRows::~MappedFrozenRows() {
  if (base_ != nullptr) ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedFrozenRows::Attach(Model& model) const {
  size_t i = 0;
  for (Parameter* p : model.params()) {
    if (!p->QuantizedUnder(FrozenStorage::kInt8Mapped)) continue;
    FTTE_CHECK(i < rows_.size() && rows_[i].name == p->name())
        << path_ << ": the model's mask changed since the file was opened";
    p->UseExternalFrozenRows(rows_[i].q, rows_[i].scale);
    ++i;
  }
}

Status MappedFrozenRows::Unchanged() const {
  struct stat now {
  }, named{};
  const bool same_fd = ::fstat(fd_, &now) == 0 && static_cast<size_t>(now.st_size) == size_ &&
                       MtimeNs(now) == mtime_ns_;
  const bool same_name =
      ::stat(path_.c_str(), &named) == 0 && named.st_dev == dev_ && named.st_ino == ino_;
  if (same_fd && same_name) return Status::Ok();
  return DataLoss(path_ +
                  ": the mapped frozen rows changed underneath the trainer (the file was "
                  "rewritten, truncated or replaced); training stopped before using them. "
                  "Write the file again and restart");
}

}  // namespace ftte
