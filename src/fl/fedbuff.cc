#include <cmath>

#include "strategies.h"

namespace ftte::fl {

std::vector<double> FedBuffStrategy::BufferWeights(const std::vector<Update>& buffer) const {
  // Nguyen et al. 2022: s(tau) = 1/sqrt(1 + tau), the sum divided by K.
  std::vector<double> w(buffer.size());
  for (size_t i = 0; i < buffer.size(); ++i) {
    w[i] = 1.0 / std::sqrt(1.0 + static_cast<double>(version_ - buffer[i].base_version)) /
           static_cast<double>(buffer.size());
  }
  return w;
}

}  // namespace ftte::fl
