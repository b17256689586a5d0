#include "secure_cohort.h"

#include <algorithm>
#include <cmath>

namespace ftte::sim::internal {

namespace secagg = fl::secagg;

Result<secagg::CohortConfig> SecureCohortConfig(const SecureAggregationConfig& c, int64_t members) {
  auto config = secagg::MakeCohortConfig(members, c.neighbours, c.threshold, c.range);
  if (!config.ok()) return InvalidArgument("[secure_aggregation] " + config.status().message());
  return config;
}

namespace {

// The values of the union of the members' masks, as (model offset, length) runs.
std::vector<std::pair<int64_t, int64_t>> UnionRuns(const fl::Strategy& strategy,
                                                   const std::vector<fl::Update>& members) {
  const auto& layout = strategy.layout();
  std::vector<std::pair<int64_t, int64_t>> runs;
  int64_t base = 0;
  for (size_t k = 0; k < layout.size(); ++k) {
    for (int64_t r = 0; r < layout[k].rows; ++r) {
      const bool any = std::any_of(members.begin(), members.end(), [&](const fl::Update& u) {
        return strategy.PlanAt(u.base_version).mask.rows[k][r] != 0;
      });
      if (!any) continue;
      const int64_t at = base + r * layout[k].row_size;
      if (!runs.empty() && runs.back().first + runs.back().second == at) {
        runs.back().second += layout[k].row_size;
      } else {
        runs.emplace_back(at, layout[k].row_size);
      }
    }
    base += layout[k].numel();
  }
  return runs;
}

}  // namespace

SecureCohortResult RunSecureCohort(secagg::CohortConfig config, const fl::Strategy& strategy,
                                   const std::vector<fl::Update>& members,
                                   const std::vector<double>& w, const std::vector<uint8_t>& drop,
                                   const std::vector<const DeviceProfile*>& devices,
                                   uint64_t seed) {
  const int n = static_cast<int>(members.size());
  FTTE_CHECK(n == config.members && w.size() == members.size() && drop.size() == members.size() &&
             devices.size() == members.size())
      << "cohort of " << config.members << " with " << n << " members";
  const auto runs = UnionRuns(strategy, members);
  int64_t length = 0;
  for (const auto& run : runs) length += run.second;
  config.length = length;
  config.graph_seed = seed;
  SecureCohortResult out;
  out.up_bytes.assign(n, 0);
  out.down_bytes.assign(n, 0);
  std::array<std::vector<double>, 4> round_s;  // per round, each participant's exchange time
  auto exchange = [&](int round, int m, int64_t down, int64_t up) {
    out.up_bytes[m] += up;
    out.down_bytes[m] += down;
    const DeviceProfile& d = *devices[m];
    round_s[round].push_back(2 * d.latency_s + static_cast<double>(down) / d.downlink_bytes_per_s +
                             static_cast<double>(up) / d.uplink_bytes_per_s);
  };
  auto round_end = [&](int round) {
    double t = 0;
    for (int r = 0; r < round; ++r) {
      if (!round_s[r].empty()) t += *std::max_element(round_s[r].begin(), round_s[r].end());
    }
    return t;
  };
  auto finish = [&](std::string reason) {
    out.duration_s = round_end(4);
    if (out.input_done_s.empty()) out.input_done_s.assign(n, out.duration_s);
    if (!reason.empty()) {
      out.aborted = true;
      out.abort_reason = std::move(reason);
    }
    return out;
  };

  secagg::CohortServer server(config);
  std::vector<secagg::Member> cohort;
  for (int m = 0; m < n; ++m) {
    cohort.emplace_back(config, m, secagg::DerivedSecret(seed, config.cohort_id * 1000003 + m));
    const secagg::KeyAdvert advert = cohort[m].Advertise();
    FTTE_CHECK(server.ReceiveAdvert(m, advert).ok());
    exchange(0, m, 0, secagg::WireBytes(advert));
  }
  auto adverts = server.CloseAdverts();
  if (!adverts.ok()) return finish(adverts.status().message());
  for (int m = 0; m < n; ++m) {
    auto shares = cohort[m].ShareKeys((*adverts)[m]);
    FTTE_CHECK(shares.ok()) << shares.status().ToString();  // honest members, all online
    FTTE_CHECK(server.ReceiveShares(m, *shares).ok());
    exchange(1, m, secagg::WireBytes((*adverts)[m]), secagg::WireBytes(*shares));
  }
  auto routed = server.CloseShares();
  if (!routed.ok()) return finish(routed.status().message());
  const auto& layout = strategy.layout();
  std::vector<float> full(strategy.weights().size()), packed(static_cast<size_t>(length));
  for (int m = 0; m < n; ++m) {
    const int64_t down = secagg::WireBytes((*routed)[m]);
    if (drop[m]) {  // received the shares, then left
      exchange(2, m, down, 0);
      continue;
    }
    std::fill(full.begin(), full.end(), 0.0f);
    fl::AddMasked(members[m].delta, static_cast<float>(w[m]),
                  strategy.PlanAt(members[m].base_version).mask, layout, &full);
    int64_t at = 0;
    for (const auto& [offset, len] : runs) {
      std::copy_n(full.begin() + offset, len, packed.begin() + at);
      at += len;
    }
    auto input = cohort[m].MaskInput((*routed)[m], packed.data());
    FTTE_CHECK(input.ok()) << input.status().ToString();
    out.clamped += cohort[m].clamped();
    exchange(2, m, down, secagg::WireBytes(*input));
    FTTE_CHECK(server.ReceiveMaskedInput(m, std::move(*input)).ok());
  }
  out.input_done_s.resize(n);
  const double shared_s = round_end(2);
  for (int m = 0; m < n; ++m) out.input_done_s[m] = shared_s + round_s[2][m];
  auto survivors = server.CloseMaskedInputs();
  if (!survivors.ok()) return finish(survivors.status().message());
  for (int m : *survivors) {
    auto unmask = cohort[m].Reveal(*survivors);
    FTTE_CHECK(unmask.ok()) << unmask.status().ToString();
    FTTE_CHECK(server.ReceiveUnmask(m, *unmask).ok());
    exchange(3, m, 4 + 4 * static_cast<int64_t>(survivors->size()), secagg::WireBytes(*unmask));
  }
  auto sum = server.Finish();
  if (!sum.ok()) return finish(sum.status().message());
  out.sum.assign(strategy.weights().size(), 0.0f);
  int64_t at = 0;
  for (const auto& [offset, len] : runs) {
    std::copy_n(sum->sum.begin() + at, len, out.sum.begin() + offset);
    at += len;
  }
  for (int32_t m : sum->contributors) out.contributors.push_back(static_cast<size_t>(m));
  return finish("");
}

}  // namespace ftte::sim::internal
