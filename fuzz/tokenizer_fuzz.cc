// Fuzzes the tokenizer load path (core/tokenizer.h): the input is a
// serialized SentencePiece ModelProto, i.e. a tokenizer.model file or the
// tokenizer bytes embedded in a .qlm file. Parsing the proto is Debian's
// libsentencepiece (not instrumented for coverage here, but it runs under
// this process's ASan and UBSan interceptors); what is ours is the
// validation and everything done with an accepted model, which this target
// then exercises: encode, decode, piece lookups and streaming decode.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "core/tokenizer.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const qlm::Tokenizer tok = qlm::Tokenizer::FromSerializedProto(bytes, "fuzz.model");
    const int n = tok.vocab_size();
    FUZZ_CHECK(n > 0);
    FUZZ_CHECK(tok.serialized_proto() == bytes);
    for (const int id : {tok.bos_id(), tok.eos_id(), tok.pad_id(), tok.unk_id()}) {
      FUZZ_CHECK(id >= -1 && id < n);
    }
    // Some ids at both ends of the vocabulary, as a model would emit them.
    std::vector<int> ids;
    for (int id = 0; id < n && id < 48; ++id) ids.push_back(id);
    for (int id = n > 48 ? n - 16 : n; id < n; ++id) ids.push_back(id);
    for (const int id : ids) {
      const std::string piece = tok.IdToPiece(id);
      const int back = tok.PieceToId(piece);
      FUZZ_CHECK(back >= -1 && back < n);
      tok.IsControl(id);
      tok.IsByte(id);
    }
    tok.Decode(ids);
    qlm::StreamingDetokenizer detok(tok);
    for (const int id : ids) detok.Push(id);
    detok.Flush();
    const std::vector<int> enc =
        tok.Encode("Emma Woodhouse, handsome, clever, and rich \xe2\x80\x99 caf\xc3\xa9 \xff",
                   /*add_bos=*/false);
    for (const int id : enc) FUZZ_CHECK(id >= 0 && id < n);
    tok.Decode(enc);
  } catch (const qlm::Error&) {
  }
  return 0;
}
