// Where a subcommand's model comes from: -m DIR, or the built-in model.
#pragma once

#include <string>

namespace qlm::cli {

// `flag` if non-empty, else the built-in Austen model: models/austen-gemma3
// found relative to the executable (<repo>/build/bin/qlm → <repo>/models),
// then under the source tree this binary was built from. Throws qlm::Error
// naming both places when neither has it.
std::string ResolveModelDir(const std::string& flag);

}  // namespace qlm::cli
