// The smallest complete use of qlm's library API: load a model, generate a
// continuation of a prompt and stream it to stdout.
//
//   qlm-simple-generate MODEL_DIR ["prompt"] [max_tokens]
//
// Links only qlm_core. From another CMake project:
//   add_subdirectory(path/to/qlm qlm EXCLUDE_FROM_ALL)
//   target_link_libraries(my_app PRIVATE qlm_core)
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/error.h"
#include "core/qlm.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [\"prompt\"] [max_tokens]\n", argv[0]);
    return 2;
  }
  const std::string prompt = argc > 2 ? argv[2] : "It is a truth universally acknowledged";
  try {
    const qlm::Model model = qlm::Model::Load(argv[1]);
    qlm::Session session(model);

    qlm::GenerateParams params;
    params.max_tokens = argc > 3 ? std::atoi(argv[3]) : 64;
    params.sampling.temperature = 0.7f;
    params.sampling.seed = 42;  // same seed, same text

    const qlm::GenerateStats stats =
        session.Generate(prompt, params, [](int32_t /*id*/, std::string_view text) {
          std::fwrite(text.data(), 1, text.size(), stdout);
          std::fflush(stdout);
          return true;  // false would stop generation here
        });
    std::fprintf(stderr, "\n[%zu prompt tokens, %zu generated, %.1f tokens/s]\n",
                 stats.prompt_tokens, stats.generated,
                 stats.decode_ms > 0
                     ? 1e3 * static_cast<double>(stats.decode_evals) / stats.decode_ms
                     : 0.0);
  } catch (const qlm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
