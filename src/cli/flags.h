// A small command-line flag parser: "--name value", "--name=value" and boolean "--name".
// Unknown flags and bad values are errors that name the flag and the accepted form.
#ifndef FTTE_CLI_FLAGS_H_
#define FTTE_CLI_FLAGS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ftte/core/status.h"

namespace ftte::cli {

class Flags {
 public:
  // `known` maps flag name -> true if it takes a value. Parses args (after the subcommand).
  // With `positional` non-null, arguments that do not start with "--" are collected there in
  // order instead of being an error ("--" alone ends the flags: the rest is positional).
  static Result<Flags> Parse(const std::vector<std::string>& args,
                             const std::map<std::string, bool>& known,
                             std::vector<std::string>* positional = nullptr);
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& def) const;
  Result<int64_t> GetInt(const std::string& name, int64_t def, int64_t min, int64_t max) const;
  Result<double> GetDouble(const std::string& name, double def) const;

 private:
  std::map<std::string, std::string> values_;
};

// Removes every "--name value" / "--name=value" from args and returns the values in order (for
// repeatable flags such as --set). Fails if the last "--name" has no value.
Result<std::vector<std::string>> TakeRepeated(std::vector<std::string>* args,
                                              const std::string& name);

}  // namespace ftte::cli

#endif  // FTTE_CLI_FLAGS_H_
