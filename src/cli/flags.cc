#include "flags.h"

#include <cstdlib>

namespace ftte::cli {

Result<Flags> Flags::Parse(const std::vector<std::string>& args,
                           const std::map<std::string, bool>& known,
                           std::vector<std::string>* positional) {
  Flags f;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (positional != nullptr && a == "--") {
      positional->insert(positional->end(), args.begin() + static_cast<ptrdiff_t>(i) + 1,
                         args.end());
      break;
    }
    if (positional != nullptr && a.rfind("--", 0) != 0) {
      positional->push_back(a);
      continue;
    }
    if (a.rfind("--", 0) != 0) {
      return InvalidArgument("unexpected argument '" + a + "'; flags start with --");
    }
    a = a.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    auto it = known.find(a);
    if (it == known.end()) {
      std::string list;
      for (const auto& [k, v] : known) list += " --" + k;
      return InvalidArgument("unknown flag --" + a + "; accepted:" + list);
    }
    if (it->second && !has_value) {
      if (i + 1 >= args.size()) return InvalidArgument("flag --" + a + " needs a value");
      value = args[++i];
    } else if (!it->second && has_value) {
      return InvalidArgument("flag --" + a + " takes no value");
    }
    f.values_[a] = value;
  }
  return f;
}

std::string Flags::Get(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() ? def : it->second;
}

Result<int64_t> Flags::GetInt(const std::string& name, int64_t def, int64_t min,
                              int64_t max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || v < min || v > max) {
    return InvalidArgument("--" + name + " must be a whole number in [" + std::to_string(min) +
                           ", " + std::to_string(max) + "], got '" + it->second + "'");
  }
  return static_cast<int64_t>(v);
}

Result<double> Flags::GetDouble(const std::string& name, double def) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (it->second.empty() || *end != '\0') {
    return InvalidArgument("--" + name + " must be a number, got '" + it->second + "'");
  }
  return v;
}

Result<std::vector<std::string>> TakeRepeated(std::vector<std::string>* args,
                                              const std::string& name) {
  std::vector<std::string> rest, values;
  const std::string flag = "--" + name, prefix = flag + "=";
  for (size_t i = 0; i < args->size(); ++i) {
    const std::string& a = (*args)[i];
    if (a == flag) {
      if (i + 1 >= args->size()) return InvalidArgument(flag + " needs a value");
      values.push_back((*args)[++i]);
    } else if (a.rfind(prefix, 0) == 0) {
      values.push_back(a.substr(prefix.size()));
    } else {
      rest.push_back(a);
    }
  }
  *args = std::move(rest);
  return values;
}

}  // namespace ftte::cli
