#pragma once

namespace qlm {

// "MAJOR.MINOR.PATCH" of this build.
const char* Version();

}  // namespace qlm
