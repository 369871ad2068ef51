// Locating ../shared test data (QLM_SHARED_DIR): a test whose data is missing
// fails with a message naming the missing path.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace qlm::testing {

inline std::string SharedPath(const std::string& relative) {
  return std::string(QLM_SHARED_DIR) + "/" + relative;
}

inline ::testing::AssertionResult SharedExists(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "missing test data: " << path << " (QLM_SHARED_DIR=" << QLM_SHARED_DIR << ")";
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace qlm::testing

// Declares `var` as the path of `relative` under QLM_SHARED_DIR, failing the
// test (and returning) if it does not exist.
#define QLM_SHARED_PATH(var, relative)                          \
  const std::string var = ::qlm::testing::SharedPath(relative); \
  ASSERT_TRUE(::qlm::testing::SharedExists(var))
