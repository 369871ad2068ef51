#include "core/export_qlm.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <vector>

#include "base/error.h"
#include "core/convert.h"
#include "loaders/qlm_file.h"

namespace qlm {
namespace {

// Sort key that orders "model.layers.10" after "model.layers.9".
std::vector<std::pair<std::string, uint64_t>> NaturalKey(const std::string& s) {
  std::vector<std::pair<std::string, uint64_t>> key;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && !std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
    uint64_t num = 0;
    size_t k = j;
    while (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k])) && k - j < 18) {
      num = num * 10 + static_cast<uint64_t>(s[k] - '0');
      ++k;
    }
    key.emplace_back(s.substr(i, j - i), num);
    i = k;
  }
  return key;
}

// One tensor to write: where it comes from.
struct Item {
  std::string name;
  std::vector<int64_t> shape;
  const StoredTensor* stored = nullptr;
  const QTensor* prepared = nullptr;
};

bool IsGptqPart(const std::string& name) {
  for (const char* suffix : {".qweight", ".qzeros", ".scales", ".g_idx"}) {
    if (name.ends_with(suffix)) return true;
  }
  return false;
}

std::vector<Item> ListTensors(const ModelSource& s) {
  std::vector<Item> items;
  for (const auto& [name, view] : s.prepared) {
    Item it;
    it.name = name;
    it.prepared = &view;
    const QlmTensorEntry* e = s.qlm ? s.qlm->contents().Find(name) : nullptr;
    if (e != nullptr) {
      it.shape = e->shape;
    } else {
      it.shape = {static_cast<int64_t>(view.desc.rows), static_cast<int64_t>(view.desc.cols)};
    }
    items.push_back(std::move(it));
  }
  for (const auto& [name, t] : s.store.tensors()) {
    if (s.gptq && IsGptqPart(name)) continue;
    if (s.prepared.count(name) != 0) continue;
    if (t.dtype == DType::kI32) {
      throw Error("tensor " + name + " in " + s.path + " is I32; only float tensors convert");
    }
    if (t.shape.empty() || t.shape.size() > 2 || t.numel() == 0) {
      throw Error("tensor " + name + " in " + s.path + " is not a vector or a matrix");
    }
    Item it;
    it.name = name;
    it.shape = t.shape;
    it.stored = &t;
    items.push_back(std::move(it));
  }
  std::sort(items.begin(), items.end(),
            [](const Item& a, const Item& b) { return NaturalKey(a.name) < NaturalKey(b.name); });
  return items;
}

}  // namespace

ExportSummary ExportQlm(const ModelSource& src, std::string_view tokenizer_proto,
                        const std::string& path, const ExportOptions& o,
                        const ExportProgress& progress) {
  QlmFileMetadata meta;
  meta.config_json = src.config_json;
  meta.generation_config_json = src.generation_config_json;
  meta.recipe_json = o.recipe_json;
  const std::vector<Item> items = ListTensors(src);
  QlmFileWriter writer(path, meta, tokenizer_proto);
  const uint32_t group = o.quantize.group_size;
  ExportSummary sum;
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    const bool matrix = it.shape.size() == 2 && it.shape[0] > 1;
    const uint64_t rows = it.shape.size() == 2 ? static_cast<uint64_t>(it.shape[0]) : 1;
    const uint64_t cols = static_cast<uint64_t>(it.shape.back());
    const bool head = it.name == "model.embed_tokens.weight" || it.name == "lm_head.weight";
    const Format want =
        !matrix ? Format::kF32 : (head && o.head_format ? *o.head_format : o.format);
    ExportedTensor info;
    std::optional<QuantizedTensor> converted;
    const QTensor* view = nullptr;
    const auto solved = o.solved ? o.solved->find(it.name) : decltype(o.solved->end()){};
    if (o.solved != nullptr && solved != o.solved->end()) {
      converted.emplace(std::move(solved->second));
      o.solved->erase(solved);
      info.how = "gptq";
    } else if (it.prepared != nullptr && it.prepared->desc.format == want &&
               (want != Format::kQ4 || group == 0 || it.prepared->desc.group_size == group)) {
      view = it.prepared;  // already in the wanted format: copied exactly
      info.how = "copy";
    } else {
      ConvertSource cs;
      cs.name = it.name;
      cs.rows = rows;
      cs.cols = cols;
      cs.stored = it.stored;
      cs.view = it.prepared;
      converted.emplace(ConvertTensor(cs, want, o.quantize, o.pool));
      info.how = matrix ? "rtn" : "vector";
    }
    const QTensor v = view ? *view : converted->view();
    writer.AddTensor(it.name, it.shape, v);
    if (matrix) {
      sum.matrix_weights += rows * cols;
      sum.matrix_bytes += v.desc.total_bytes;
    } else {
      sum.vector_bytes += v.desc.total_bytes;
    }
    info.name = it.name;
    info.index = i;
    info.total = items.size();
    info.format = v.desc.format;
    info.bytes = v.desc.total_bytes;
    if (progress) progress(info);
  }
  sum.tensors = items.size();
  sum.file_bytes = writer.Finish();
  return sum;
}

}  // namespace qlm
