#include "core/version.h"

namespace qlm {

const char* Version() { return "0.1.0"; }

}  // namespace qlm
