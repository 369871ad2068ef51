// qlm_bad_file_check: opens one model file the way qlm's loaders do and
// reports the outcome like the CLI: nothing and exit 0 when it loads, else
// one `error: ...` line and exit 1 (2 for a usage error). Exit 3 (with the
// exception's text) means an exception other than qlm::Error escaped the
// loader — a bug the robustness tests then report.
//
//   qlm_bad_file_check qlm FILE   .qlm reader with every checksum verified,
//                                 then its embedded config.json, generation
//                                 config and tokenizer parsed
//   qlm_bad_file_check gptq DIR   AutoGPTQ directory: config.json, the GPTQ
//                                 settings, the weight store, then every
//                                 linear repacked to q4, and the tokenizer
//   qlm_bad_file_check tok FILE   tokenizer.model, then a round trip
//
// The CLI (`qlm logits -m ...`) is the end-to-end check for Hugging Face
// directories; this covers the loaders the CLI does not reach (yet).
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/tokenizer.h"
#include "loaders/generation_config.h"
#include "loaders/gptq.h"
#include "loaders/model_config.h"
#include "loaders/qlm_file.h"
#include "loaders/weight_store.h"

namespace {

void CheckQlm(const std::string& path) {
  qlm::QlmReadOptions o;
  o.verify_checksums = true;
  const qlm::QlmFile f = qlm::QlmFile::Open(path, o);
  const qlm::QlmContents& c = f.contents();
  qlm::ParseHfConfig(c.metadata.config_json);
  if (!c.metadata.generation_config_json.empty()) {
    qlm::ParseGenerationConfig(c.metadata.generation_config_json);
  }
  if (!c.tokenizer_proto.empty()) {
    qlm::Tokenizer::FromSerializedProto(c.tokenizer_proto, path + " (embedded tokenizer)");
  }
}

void CheckGptq(const std::string& dir) {
  const qlm::ModelConfig c = qlm::ReadHfConfig(dir + "/config.json");
  const std::optional<qlm::GptqConfig> gptq = qlm::ReadGptqConfig(dir);
  if (!gptq) throw qlm::Error(dir + " has no GPTQ quantization_config");
  const qlm::WeightStore store = qlm::WeightStore::OpenHfDir(dir);
  const uint64_t d = static_cast<uint64_t>(c.hidden_size);
  const uint64_t ff = static_cast<uint64_t>(c.intermediate_size);
  const uint64_t q = static_cast<uint64_t>(c.num_heads) * static_cast<uint64_t>(c.head_dim);
  const uint64_t kv = static_cast<uint64_t>(c.num_kv_heads) * static_cast<uint64_t>(c.head_dim);
  struct Linear {
    const char* suffix;
    uint64_t rows, cols;
  };
  const std::vector<Linear> linears = {{"self_attn.q_proj", q, d},  {"self_attn.k_proj", kv, d},
                                       {"self_attn.v_proj", kv, d}, {"self_attn.o_proj", d, q},
                                       {"mlp.gate_proj", ff, d},    {"mlp.up_proj", ff, d},
                                       {"mlp.down_proj", d, ff}};
  for (int l = 0; l < c.num_layers; ++l) {
    for (const Linear& lin : linears) {
      const std::string prefix = "model.layers." + std::to_string(l) + "." + lin.suffix;
      qlm::RepackGptqLinear(qlm::FindGptqLinear(store, prefix), *gptq, lin.rows, lin.cols);
    }
  }
  qlm::Tokenizer::FromFile(dir + "/tokenizer.model");
}

void CheckTokenizer(const std::string& path) {
  const qlm::Tokenizer t = qlm::Tokenizer::FromFile(path);
  const std::vector<int> ids = t.Encode("the hat", /*add_bos=*/true);
  t.Decode(ids);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "error: usage: qlm_bad_file_check qlm|gptq|tok PATH\n");
    return 2;
  }
  const std::string kind = argv[1], path = argv[2];
  try {
    if (kind == "qlm") {
      CheckQlm(path);
    } else if (kind == "gptq") {
      CheckGptq(path);
    } else if (kind == "tok") {
      CheckTokenizer(path);
    } else {
      throw qlm::UsageError("unknown kind '" + kind + "' (qlm, gptq or tok)");
    }
  } catch (const qlm::UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const qlm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception (not a qlm::Error): %s\n", e.what());
    return 3;
  }
  return 0;
}
