// A model from ../shared for tests that need a real one, loaded once per use
// site and kept for the whole run (reachable at exit: not a leak).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/qlm.h"
#include "golden_util.h"

namespace qlm::testing {

// `rel` under QLM_SHARED_DIR, e.g. "models/austen-gemma3". A missing
// directory fails the test with its path (and aborts: nothing can run).
inline const Model* LoadSharedModel(const std::string& rel) {
  const std::string dir = SharedPath(rel);
  if (!std::filesystem::exists(dir)) {
    ADD_FAILURE() << "missing test data: " << dir;
    std::abort();
  }
  return new Model(Model::Load(dir));
}

// The built-in Austen model, shared by every test of the binary.
inline const Model& AustenModel() {
  static const Model* m = LoadSharedModel("models/austen-gemma3");
  return *m;
}

}  // namespace qlm::testing
