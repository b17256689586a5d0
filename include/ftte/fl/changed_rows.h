// Natural sparsity of updates: a device that trains an embedding changes only the rows of the
// tokens it saw, so its upload need carry only the rows of the server's mask whose change is
// not all zero. The wire encoding (encoding.h) is unchanged: a sparse update over a sub-mask.
// The server validates that the sub-mask is a subset of its mask and treats missing rows as
// zero change (ExpandToMask), which is exactly the dense update.
#ifndef FTTE_FL_CHANGED_ROWS_H_
#define FTTE_FL_CHANGED_ROWS_H_

#include <vector>

#include "ftte/core/status.h"
#include "ftte/fl/encoding.h"
#include "ftte/fl/update.h"

namespace ftte::fl {

// The rows of `mask` where `delta` (packed over `mask`) has a value other than 0 (-0 counts as
// 0). O(delta). Aborts (FTTE_CHECK) if delta's size is not mask.Numel(layout).
Mask ChangedRows(const std::vector<float>& delta, const Mask& mask,
                 const std::vector<ParamLayout>& layout);

// `delta` packed over `mask`, repacked over `sub` (a subset of `mask`): the rows of `sub` only.
// Aborts (FTTE_CHECK) if `sub` is not a subset of `mask` or the sizes do not fit.
std::vector<float> RestrictToRows(const std::vector<float>& delta, const Mask& mask,
                                  const Mask& sub, const std::vector<ParamLayout>& layout);

// Whether every row of `sub` is a row of `mask` (same shape required: false otherwise).
bool IsSubsetOf(const Mask& sub, const Mask& mask);

// The encoding of `u` (delta packed over `mask`) carrying only its changed rows: a sparse
// encoding over ChangedRows, whatever options.sparse says (int8 is honoured). Its size is
// EncodedSize(ChangedRows(u.delta, mask, layout), layout, {true, options.int8}).
std::string EncodeChangedRows(const Update& u, const Mask& mask,
                              const std::vector<ParamLayout>& layout, const EncodeOptions& options);

// The server side: a decoded update over any subset of `mask`, as an update whose delta is
// packed over `mask`, with zeros for the rows it does not carry. Errors (InvalidArgument): the
// decoded rows are not a subset of `mask` ("the update covers rows outside the server's mask").
Result<Update> ExpandToMask(const DecodedUpdate& decoded, const Mask& mask,
                            const std::vector<ParamLayout>& layout);

}  // namespace ftte::fl

#endif  // FTTE_FL_CHANGED_ROWS_H_
