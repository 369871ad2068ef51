#include "apps/qlm/timings.h"

#include <spdlog/spdlog.h>

#include <cstddef>

#include "kernels/registry.h"

namespace qlm::cli {

void PrintTimings(double load_ms, const GenerateStats& st, double total_ms) {
  auto per = [](double ms, size_t n) { return n ? ms / static_cast<double>(n) : 0.0; };
  auto rate = [](double ms, size_t n) { return ms > 0 ? 1e3 * static_cast<double>(n) / ms : 0.0; };
  spdlog::info("load time        = {:10.2f} ms", load_ms);
  spdlog::info(
      "prompt eval time = {:10.2f} ms / {:5} tokens ({:8.2f} ms per token, {:9.2f} tokens per "
      "second)",
      st.prompt_ms, st.prompt_tokens, per(st.prompt_ms, st.prompt_tokens),
      rate(st.prompt_ms, st.prompt_tokens));
  spdlog::info(
      "eval time        = {:10.2f} ms / {:5} runs   ({:8.2f} ms per token, {:9.2f} tokens per "
      "second)",
      st.decode_ms, st.decode_evals, per(st.decode_ms, st.decode_evals),
      rate(st.decode_ms, st.decode_evals));
  spdlog::info("sampling time    = {:10.2f} ms / {:5} runs", st.sample_ms, st.generated);
  spdlog::info("total time       = {:10.2f} ms / {:5} tokens", total_ms,
               st.prompt_tokens + st.generated);
}

void PrintKvMemory(const Session& s) {
  auto mib = [](size_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  spdlog::info(
      "KV cache         = {:10.2f} MiB used ({} of {} positions, {}), {:.2f} MiB at full "
      "context",
      mib(s.kv_used_bytes()), s.position(), s.context(), kernels::KvTypeName(s.kv_type()),
      mib(s.kv_bytes()));
}

}  // namespace qlm::cli
