#include "ftte/fl/changed_rows.h"

#include "ftte/core/check.h"

namespace ftte::fl {

namespace {

void CheckPacked(const std::vector<float>& delta, const Mask& mask,
                 const std::vector<ParamLayout>& layout) {
  FTTE_CHECK(mask.rows.size() == layout.size())
      << "mask has " << mask.rows.size() << " parameters, layout " << layout.size();
  FTTE_CHECK(static_cast<int64_t>(delta.size()) == mask.Numel(layout))
      << "delta has " << delta.size() << " values, the mask covers " << mask.Numel(layout);
}

}  // namespace

Mask ChangedRows(const std::vector<float>& delta, const Mask& mask,
                 const std::vector<ParamLayout>& layout) {
  CheckPacked(delta, mask, layout);
  Mask out;
  const float* v = delta.data();
  for (size_t k = 0; k < layout.size(); ++k) {
    const int64_t rs = layout[k].row_size;
    std::vector<uint8_t> rows(mask.rows[k].size(), 0);
    for (size_t r = 0; r < rows.size(); ++r) {
      if (!mask.rows[k][r]) continue;
      for (int64_t j = 0; j < rs; ++j) {
        if (v[j] != 0.0f) {
          rows[r] = 1;
          break;
        }
      }
      v += rs;
    }
    out.rows.push_back(std::move(rows));
  }
  return out;
}

bool IsSubsetOf(const Mask& sub, const Mask& mask) {
  if (sub.rows.size() != mask.rows.size()) return false;
  for (size_t k = 0; k < sub.rows.size(); ++k) {
    if (sub.rows[k].size() != mask.rows[k].size()) return false;
    for (size_t r = 0; r < sub.rows[k].size(); ++r) {
      if (sub.rows[k][r] && !mask.rows[k][r]) return false;
    }
  }
  return true;
}

std::vector<float> RestrictToRows(const std::vector<float>& delta, const Mask& mask,
                                  const Mask& sub, const std::vector<ParamLayout>& layout) {
  CheckPacked(delta, mask, layout);
  FTTE_CHECK(IsSubsetOf(sub, mask)) << "RestrictToRows: the rows are not a subset of the mask";
  std::vector<float> out;
  out.reserve(static_cast<size_t>(sub.Numel(layout)));
  const float* v = delta.data();
  for (size_t k = 0; k < layout.size(); ++k) {
    const int64_t rs = layout[k].row_size;
    for (size_t r = 0; r < mask.rows[k].size(); ++r) {
      if (!mask.rows[k][r]) continue;
      if (sub.rows[k][r]) out.insert(out.end(), v, v + rs);
      v += rs;
    }
  }
  return out;
}

std::string EncodeChangedRows(const Update& u, const Mask& mask,
                              const std::vector<ParamLayout>& layout,
                              const EncodeOptions& options) {
  const Mask changed = ChangedRows(u.delta, mask, layout);
  Update sub = u;
  sub.delta = RestrictToRows(u.delta, mask, changed, layout);
  return EncodeUpdate(sub, changed, layout, {true, options.int8});
}

Result<Update> ExpandToMask(const DecodedUpdate& decoded, const Mask& mask,
                            const std::vector<ParamLayout>& layout) {
  if (!IsSubsetOf(decoded.mask, mask)) {
    return InvalidArgument(
        "the update covers rows outside the server's mask; a device may send only rows it "
        "was asked to train (fetch new work to get the current mask)");
  }
  FTTE_CHECK(static_cast<int64_t>(decoded.update.delta.size()) == decoded.mask.Numel(layout));
  Update out = decoded.update;
  out.delta.assign(static_cast<size_t>(mask.Numel(layout)), 0.0f);
  const float* in = decoded.update.delta.data();
  float* o = out.delta.data();
  for (size_t k = 0; k < layout.size(); ++k) {
    const int64_t rs = layout[k].row_size;
    for (size_t r = 0; r < mask.rows[k].size(); ++r) {
      if (!mask.rows[k][r]) continue;
      if (decoded.mask.rows[k][r]) {
        std::copy(in, in + rs, o);
        in += rs;
      }
      o += rs;
    }
  }
  return out;
}

}  // namespace ftte::fl
