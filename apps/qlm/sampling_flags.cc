#include "apps/qlm/sampling_flags.h"

#include <random>

namespace qlm::cli {

void AddSamplingFlags(CLI::App* cmd, SamplingFlags& flags) {
  SamplingParams& s = flags.sampling;
  cmd->add_option("--temp", s.temperature, "Temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", s.top_k, "Keep the K most likely tokens (0 = off)")
      ->capture_default_str();
  cmd->add_option("--top-p", s.top_p, "Nucleus sampling mass, in (0, 1] (1 = off)")
      ->capture_default_str();
  cmd->add_option("--min-p", s.min_p,
                  "Drop tokens below this fraction of the best one's probability (0 = off)")
      ->capture_default_str();
  cmd->add_option("--repeat-penalty", s.repeat_penalty,
                  "Penalty for recently seen tokens (1 = off)")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", s.repeat_last_n,
                  "Tokens the repeat penalty looks back over (-1 = all, 0 = off)")
      ->capture_default_str();
  cmd->add_option("-s,--seed", flags.seed, "Random seed (-1 = random)")->capture_default_str();
}

SamplingParams ResolveSamplingFlags(const SamplingFlags& flags) {
  SamplingParams sp = flags.sampling;
  sp.seed = flags.seed >= 0 ? static_cast<uint64_t>(flags.seed) : std::random_device{}();
  ValidateSamplingParams(sp);
  return sp;
}

}  // namespace qlm::cli
