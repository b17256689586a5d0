// The schema of experiment configs (private to src/sim): one row per key with its type, range
// check and getter, shared by the TOML reader, command-line overrides and the writers, so that
// the three can never disagree about a key.
#ifndef FTTE_SIM_CONFIG_SCHEMA_H_
#define FTTE_SIM_CONFIG_SCHEMA_H_

#include <functional>
#include <string>
#include <vector>

#include "ftte/sim/config.h"

namespace ftte::sim::internal {

using Kind = ConfigValue::Kind;

template <typename T>
struct Field {
  const char* key;
  Kind kind;
  // Checks the range and sets the value; the message leaves out the key ("must be >= 1, got 0").
  std::function<Status(T&, const ConfigValue&)> set;
  std::function<ConfigValue(const T&)> get;
};

// The keys of each table, in schema order. Method names and algorithms are keys too; setting the
// algorithm resets the algorithm-dependent defaults (mask, frozen, upload_sparse).
const std::vector<Field<SimConfig>>& TopFields();
const std::vector<Field<SimConfig>>& ClientFields();             // [client]
const std::vector<Field<SimConfig>>& DeviceFields();             // [devices]
const std::vector<Field<SimConfig>>& PersonalizeFields();        // [personalize] (text datasets)
const std::vector<Field<SimConfig>>& TuneFields();               // [tune]
const std::vector<Field<SimConfig>>& AttackFields();             // [attack]
const std::vector<Field<SimConfig>>& PrivacyFields();            // [privacy]
const std::vector<Field<SimConfig>>& SecureAggregationFields();  // [secure_aggregation]
const std::vector<Field<MethodConfig>>& MethodFields();          // [[method]]

// Whether DescribeSimConfig shows `key` of `section` ("" top level, "personalize", "method"):
// the text-only keys are hidden for image datasets (so image runs' outputs stay as they were),
// except upload_changed_rows when it is on; [tune] only when it tunes, and a method's batch,
// local_steps and tune_like only when set.
bool Shown(const SimConfig& config, const std::string& section, const std::string& key,
           const MethodConfig* method);

template <typename T>
const Field<T>* FindField(const std::vector<Field<T>>& fields, const std::string& key) {
  for (const auto& f : fields) {
    if (key == f.key) return &f;
  }
  return nullptr;
}

template <typename T>
std::vector<std::string> KeyNames(const std::vector<Field<T>>& fields) {
  std::vector<std::string> names;
  for (const auto& f : fields) names.push_back(f.key);
  return names;
}

// A TOML basic string, quoted and escaped.
std::string Quote(const std::string& s);
// How a value reads in TOML (and in messages): 3, 0.5, 2.0, true, "text".
std::string ValueText(const ConfigValue& v);
// "an integer", "a number", "true or false", "a string".
const char* KindName(Kind k);
// Checks a partition spec: iid | dirichlet:A (A > 0) | shards:N (N >= 1) | natural.
// (ValidateSimConfig checks that natural goes with a text dataset and only with one.)
Status CheckPartition(const std::string& spec);

}  // namespace ftte::sim::internal

#endif  // FTTE_SIM_CONFIG_SCHEMA_H_
