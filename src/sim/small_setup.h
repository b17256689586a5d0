// For the simulator's tests: a federation of 12 devices on synthetic images, small enough to run
// a method in well under a second.
#ifndef FTTE_SIM_SMALL_SETUP_H_
#define FTTE_SIM_SMALL_SETUP_H_

#include "ftte/data/synthetic.h"
#include "ftte/sim/config.h"
#include "ftte/sim/simulator.h"

namespace ftte::sim {

// One method of algorithm `a` (FTTE on a budget mask with int8 frozen rows; the others dense).
inline SimConfig SmallConfig(fl::Algorithm a) {
  SimConfig c;
  c.model = "mlp";
  c.client.local_steps = 3;
  c.client.batch = 16;
  c.client.optimizer.lr = 0.05f;
  c.duration_s = 60;
  c.eval_every_s = 10;
  c.target_accuracy = 0.5;
  c.population.devices = 12;
  c.population.straggler_fraction = 0.5;
  c.population.memory_min = 1 << 20;
  c.population.memory_max = 8 << 20;
  MethodConfig m;
  m.name = fl::AlgorithmName(a);
  m.server.algorithm = a;
  m.server.concurrency = 4;
  m.server.buffer = 2;
  if (a == fl::Algorithm::kFtte) {
    m.server.mask = "budget";
    m.server.frozen = FrozenStorage::kInt8;
  } else {
    m.upload.sparse = false;
  }
  c.methods.push_back(m);
  return c;
}

// 480 training and 200 test images; device d holds every 12th sample from d.
inline Environment SmallEnvironment(const SimConfig& c) {
  Environment env;
  env.train = data::SyntheticImages(480, 1);
  env.test = data::SyntheticImages(200, 2);
  env.devices = MakeDevices(c.population, c.seed).value();
  for (size_t d = 0; d < env.devices.size(); ++d) {
    env.partition.emplace_back();
    for (int64_t i = static_cast<int64_t>(d); i < env.train.size; i += 12) {
      env.partition.back().push_back(i);
    }
  }
  return env;
}

}  // namespace ftte::sim

#endif  // FTTE_SIM_SMALL_SETUP_H_
