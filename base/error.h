// Errors qlm reports to users. Every layer throws qlm::Error with a message
// that names the offending thing (file, tensor, flag) and, where possible,
// what to do; apps/ turns it into one `error: ...` line and an exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace qlm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A mistake in how the program was invoked (bad flag value, unknown ISA):
// the CLI exits with code 2 for these, 1 for every other Error.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what) {}
};

}  // namespace qlm
