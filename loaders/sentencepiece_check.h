// Validation of the parts of a serialized SentencePiece ModelProto (a
// tokenizer.model file, or the tokenizer a .qlm file embeds) that
// libsentencepiece uses without bounds checks.
//
// The normalizer's precompiled_charsmap is a Darts-clone double-array trie
// followed by a table of NUL-terminated replacement strings:
//   [u32 trie_bytes][trie_bytes / 4 units of u32][replacement strings]
// SentencePiece 0.1.97 (Debian 12) maps it as is and walks it with every
// input byte: a crafted trie makes Encode/Decode read anywhere (qlm's
// robustness corpus has one that crashes it with SIGSEGV), a size field up
// to 3 bytes past the blob passes its own check, and more than 32 matches
// along one input overrun a fixed-size result array on the stack. The walk
// below visits every state reachable from the root by any byte string and
// accepts the trie only if every transition, leaf and replacement string
// it can touch lies inside the blob, it has no cycle, and no input matches
// more than 32 rules.
#pragma once

#include <string>
#include <string_view>

namespace qlm {

// Throws qlm::Error naming `source` if `proto` is not a well-formed protobuf
// message at the top level, or if its normalizer_spec or denormalizer_spec
// holds a precompiled_charsmap that fails the checks above.
void CheckSentencePieceProto(std::string_view proto, const std::string& source);

// The check of one precompiled_charsmap blob (`what` names it in messages);
// an empty blob (no normalization rules) is valid.
void CheckPrecompiledCharsMap(std::string_view blob, const std::string& what);

}  // namespace qlm
