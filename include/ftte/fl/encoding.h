// The one wire encoding of updates and model values, used by the simulator (to count real
// bytes) and the network runtime (to send them).
//
// Layout (little-endian):
//   "FTU1"  u8 flags (bit0 sparse, bit1 int8 values, bit2 row statistics)  u8[3] zero
//   i64 device, i64 base_version, i64 num_samples, f32 loss, f64 variance, i64 update_id
//   u32 number of parameters, then per parameter:
//     sparse only: u8 row selection kind (0 none, 1 all, 2 run list, 3 bitmap) and its body:
//       run list: u32 count, then count x (u32 begin, u32 end);  bitmap: ceil(rows/8) bytes
//       (the encoder picks the smaller of run list and bitmap);
//     values of the selected rows (dense: of every row, zeros outside the mask):
//       float32: f32 each;  int8: f32 scale (max|v|/127), then i8 each.
//   row statistics only: u32 count (the rows of the mask), then count x f32 (Update::row_sq,
//   finite and >= 0).
//   u32 CRC-32 (zlib) of everything before it.
#ifndef FTTE_FL_ENCODING_H_
#define FTTE_FL_ENCODING_H_

#include <string>
#include <string_view>

#include "ftte/fl/update.h"

namespace ftte::fl {

struct EncodeOptions {
  bool sparse = true;      // false: every value of the model (what FedAvg and FedBuff send)
  bool int8 = false;       // 8-bit values with a per-parameter scale
  bool row_stats = false;  // Update::row_sq, one float per row of the mask (federated importance)
};

// Encodes u.delta (packed over `mask`) under `options`.
std::string EncodeUpdate(const Update& u, const Mask& mask, const std::vector<ParamLayout>& layout,
                         const EncodeOptions& options);

// The size EncodeUpdate would produce, without the values (the simulator schedules with it).
int64_t EncodedSize(const Mask& mask, const std::vector<ParamLayout>& layout,
                    const EncodeOptions& options);

struct DecodedUpdate {
  Update update;  // delta packed over `mask` (for a dense encoding: over the full mask)
  Mask mask;
};

// Decodes and validates against `layout`: magic, flags, parameter count, row selections within
// bounds and ordered, value counts, finite values, checksum, no trailing bytes. Errors say
// what is wrong and where ("parameter 3 (7.weight): run [10, 600) exceeds 512 rows").
Result<DecodedUpdate> DecodeUpdate(std::string_view bytes, const std::vector<ParamLayout>& layout);

}  // namespace ftte::fl

#endif  // FTTE_FL_ENCODING_H_
