// Typed, checked access to the fields of a JSON object read from a model
// file (config.json, generation_config.json). Every failure is a qlm::Error
// that names the file and the key, e.g.
//   config.json: "num_attention_heads" must be an integer, not string "4".
// Internal to loaders/; not part of the public interface.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace qlm::json_fields {

using nlohmann::json;

// Describes a value for messages: its JSON type and, for a scalar, the value
// (shortened). Containers are never dumped: a hostile file could nest them
// deeply enough to overflow the stack of nlohmann's recursive serializer.
inline std::string Describe(const json& v) {
  if (v.is_array()) return "array of " + std::to_string(v.size());
  if (v.is_object()) return "object of " + std::to_string(v.size()) + " keys";
  std::string text = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(v.type_name()) + " " + text;
}

class Fields {
 public:
  // `obj` must outlive this; `file` names the source in messages.
  Fields(const json& obj, std::string file) : obj_(obj), file_(std::move(file)) {
    if (!obj_.is_object()) throw Error(file_ + ": must be a JSON object, not " + Describe(obj_));
  }

  const std::string& file() const { return file_; }

  // nullptr if the key is absent (a JSON null is returned as a null value).
  const json* Find(const std::string& key) const {
    const auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }
  bool Has(const std::string& key) const { return Find(key) != nullptr; }
  // Absent or null.
  bool IsNullOrAbsent(const std::string& key) const {
    const json* v = Find(key);
    return v == nullptr || v->is_null();
  }

  [[noreturn]] void Fail(const std::string& key, const std::string& what) const {
    throw Error(file_ + ": \"" + key + "\" " + what);
  }
  [[noreturn]] void Missing(const std::string& key) const {
    throw Error(file_ + ": missing required key \"" + key + "\"");
  }

  // An integer that fits int. Rejects floats, strings, null, booleans.
  int IntValue(const std::string& key, const json& v) const {
    if (v.is_number_unsigned()) {
      const uint64_t x = v.get<uint64_t>();
      if (x > static_cast<uint64_t>(std::numeric_limits<int>::max())) Fail(key, "is too large");
      return static_cast<int>(x);
    }
    if (v.is_number_integer()) {
      const int64_t x = v.get<int64_t>();
      if (x < std::numeric_limits<int>::min()) Fail(key, "is too small");
      return static_cast<int>(x);
    }
    Fail(key, "must be an integer, not " + Describe(v));
  }
  double NumberValue(const std::string& key, const json& v) const {
    if (!v.is_number()) Fail(key, "must be a number, not " + Describe(v));
    const double x = v.get<double>();
    if (!std::isfinite(x)) Fail(key, "must be finite");
    return x;
  }

  // `x` (a value read for `key`) as the float the engine computes with:
  // converting a double outside float's range is undefined behaviour, so
  // such a value is an error naming the key.
  float ToFloat(const std::string& key, double x) const {
    if (!(std::fabs(x) <= static_cast<double>(std::numeric_limits<float>::max()))) {
      Fail(key, "is out of range for a 32-bit float");
    }
    return static_cast<float>(x);
  }

  // Required: absent or null is an error.
  int Int(const std::string& key) const {
    const json* v = Find(key);
    if (v == nullptr) Missing(key);
    return IntValue(key, *v);
  }
  // Optional with a default for an absent key; null is a type error.
  int Int(const std::string& key, int def) const {
    const json* v = Find(key);
    return v == nullptr ? def : IntValue(key, *v);
  }
  // Nullable: absent → def, null → nullopt.
  std::optional<int> NullableInt(const std::string& key, std::optional<int> def) const {
    const json* v = Find(key);
    if (v == nullptr) return def;
    if (v->is_null()) return std::nullopt;
    return IntValue(key, *v);
  }
  double Number(const std::string& key) const {
    const json* v = Find(key);
    if (v == nullptr) Missing(key);
    return NumberValue(key, *v);
  }
  double Number(const std::string& key, double def) const {
    const json* v = Find(key);
    return v == nullptr ? def : NumberValue(key, *v);
  }
  std::optional<double> NullableNumber(const std::string& key, std::optional<double> def) const {
    const json* v = Find(key);
    if (v == nullptr) return def;
    if (v->is_null()) return std::nullopt;
    return NumberValue(key, *v);
  }
  bool Bool(const std::string& key, bool def) const {
    const json* v = Find(key);
    if (v == nullptr) return def;
    if (!v->is_boolean()) Fail(key, "must be true or false, not " + Describe(*v));
    return v->get<bool>();
  }
  std::string String(const std::string& key) const {
    const json* v = Find(key);
    if (v == nullptr) Missing(key);
    if (!v->is_string()) Fail(key, "must be a string, not " + Describe(*v));
    return v->get<std::string>();
  }
  std::string String(const std::string& key, const std::string& def) const {
    const json* v = Find(key);
    if (v == nullptr) return def;
    if (!v->is_string()) Fail(key, "must be a string, not " + Describe(*v));
    return v->get<std::string>();
  }
  std::optional<std::string> NullableString(const std::string& key,
                                            std::optional<std::string> def) const {
    const json* v = Find(key);
    if (v == nullptr) return def;
    if (v->is_null()) return std::nullopt;
    if (!v->is_string()) Fail(key, "must be a string, not " + Describe(*v));
    return v->get<std::string>();
  }
  // An integer or a list of integers (eos_token_id); absent → def, null → {}.
  std::vector<int> IntOrIntList(const std::string& key, const std::vector<int>& def) const {
    const json* v = Find(key);
    if (v == nullptr) return def;
    if (v->is_null()) return {};
    if (v->is_array()) {
      std::vector<int> out;
      for (const json& e : *v) {
        if (!e.is_number_integer()) {
          Fail(key, "must be an integer or a list of integers, not a list holding " + Describe(e));
        }
        out.push_back(IntValue(key, e));
      }
      return out;
    }
    if (!v->is_number_integer()) {
      Fail(key, "must be an integer or a list of integers, not " + Describe(*v));
    }
    return {IntValue(key, *v)};
  }

 private:
  const json& obj_;
  std::string file_;
};

}  // namespace qlm::json_fields
