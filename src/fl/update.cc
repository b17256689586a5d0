#include "ftte/fl/update.h"

#include <algorithm>

#include "ftte/core/check.h"

namespace ftte::fl {

std::vector<ParamLayout> LayoutOf(const Model& model) {
  std::vector<ParamLayout> out;
  for (const Parameter* p : model.params()) out.push_back({p->name(), p->rows(), p->row_size()});
  return out;
}

int64_t TotalNumel(const std::vector<ParamLayout>& layout) {
  int64_t n = 0;
  for (const auto& p : layout) n += p.numel();
  return n;
}

Mask Mask::Full(const std::vector<ParamLayout>& layout) {
  Mask m;
  for (const auto& p : layout) m.rows.emplace_back(static_cast<size_t>(p.rows), 1);
  return m;
}

Mask Mask::FromModel(const Model& model) {
  Mask m;
  for (const Parameter* p : model.params()) {
    std::vector<uint8_t> r(static_cast<size_t>(p->rows()));
    for (int64_t i = 0; i < p->rows(); ++i) r[i] = p->row_trainable(i) ? 1 : 0;
    m.rows.push_back(std::move(r));
  }
  return m;
}

void Mask::ApplyTo(Model& model) const {
  FTTE_CHECK(rows.size() == model.params().size());
  for (size_t k = 0; k < rows.size(); ++k) {
    Parameter* p = model.params()[k];
    FTTE_CHECK(static_cast<int64_t>(rows[k].size()) == p->rows());
    for (int64_t r = 0; r < p->rows();) {
      int64_t e = r;
      while (e < p->rows() && rows[k][e] == rows[k][r]) ++e;
      p->SetRowsTrainable(r, e, rows[k][r] != 0);
      r = e;
    }
  }
}

int64_t Mask::Numel(const std::vector<ParamLayout>& layout) const {
  int64_t n = 0;
  for (size_t k = 0; k < rows.size(); ++k) {
    for (uint8_t t : rows[k]) n += t ? layout[k].row_size : 0;
  }
  return n;
}

int64_t Mask::Rows() const {
  int64_t n = 0;
  for (const auto& r : rows) n += std::count(r.begin(), r.end(), uint8_t{1});
  return n;
}

std::vector<float> GetWeights(const Model& model) {
  std::vector<float> flat;
  for (const Parameter* p : model.params()) {
    const size_t at = flat.size();
    flat.resize(at + static_cast<size_t>(p->numel()));
    p->ReadRows(0, p->rows(), flat.data() + at);
  }
  return flat;
}

void SetWeights(Model& model, const std::vector<float>& flat) {
  size_t at = 0;
  for (Parameter* p : model.params()) {
    FTTE_CHECK(!p->quantized()) << p->name() << ": SetWeights on an int8-stored parameter";
    FTTE_CHECK(at + static_cast<size_t>(p->numel()) <= flat.size());
    std::copy(flat.begin() + static_cast<int64_t>(at),
              flat.begin() + static_cast<int64_t>(at) + p->numel(), p->data());
    at += static_cast<size_t>(p->numel());
  }
  FTTE_CHECK(at == flat.size()) << "flat weights have " << flat.size() << " values, model " << at;
}

std::vector<float> PackMasked(const std::vector<float>& flat, const Mask& mask,
                              const std::vector<ParamLayout>& layout) {
  std::vector<float> packed;
  packed.reserve(static_cast<size_t>(mask.Numel(layout)));
  int64_t base = 0;
  for (size_t k = 0; k < layout.size(); ++k) {
    const int64_t rs = layout[k].row_size;
    for (int64_t r = 0; r < layout[k].rows; ++r) {
      if (!mask.rows[k][r]) continue;
      const float* src = flat.data() + base + r * rs;
      packed.insert(packed.end(), src, src + rs);
    }
    base += layout[k].numel();
  }
  return packed;
}

namespace {
// Visits the mask's rows of `flat` in order with their slice of `packed`.
template <typename F>
void ForMaskedRows(const std::vector<float>& packed, const Mask& mask,
                   const std::vector<ParamLayout>& layout, std::vector<float>* flat, F&& f) {
  int64_t base = 0;
  size_t at = 0;
  for (size_t k = 0; k < layout.size(); ++k) {
    const int64_t rs = layout[k].row_size;
    for (int64_t r = 0; r < layout[k].rows; ++r) {
      if (!mask.rows[k][r]) continue;
      f(flat->data() + base + r * rs, packed.data() + at, rs);
      at += static_cast<size_t>(rs);
    }
    base += layout[k].numel();
  }
  FTTE_CHECK(at == packed.size()) << "packed update has " << packed.size() << " values, mask "
                                  << at;
}

}  // namespace

void AddMasked(const std::vector<float>& packed, float scale, const Mask& mask,
               const std::vector<ParamLayout>& layout, std::vector<float>* flat) {
  ForMaskedRows(packed, mask, layout, flat, [scale](float* dst, const float* src, int64_t n) {
    for (int64_t j = 0; j < n; ++j) dst[j] += scale * src[j];
  });
}

void SetMasked(const std::vector<float>& packed, const Mask& mask,
               const std::vector<ParamLayout>& layout, std::vector<float>* flat) {
  ForMaskedRows(packed, mask, layout, flat,
                [](float* dst, const float* src, int64_t n) { std::copy(src, src + n, dst); });
}

}  // namespace ftte::fl
