#include "loaders/sentencepiece_check.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/error.h"

namespace qlm {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the charsmap is read as little-endian, as SentencePiece does on this host");

// What SentencePiece's normalizer can hold of one search's matches
// (Normalizer::kMaxTrieResultsSize): more overrun its stack array.
constexpr uint32_t kMaxMatches = 32;

// ---- The protobuf wire format, only as far as walking a message needs.

class Wire {
 public:
  explicit Wire(std::string_view s)
      : p_(reinterpret_cast<const uint8_t*>(s.data())), end_(p_ + s.size()) {}
  bool done() const { return p_ == end_; }
  bool Varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return false;
      const uint8_t b = *p_++;
      v |= uint64_t{b & 0x7Fu} << shift;
      if (b < 0x80) return true;
    }
    return false;  // more than 10 bytes
  }
  bool Skip(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_)) return false;
    p_ += n;
    return true;
  }
  bool Bytes(std::string_view& out) {
    uint64_t n = 0;
    if (!Varint(n) || n > static_cast<uint64_t>(end_ - p_)) return false;
    out = std::string_view(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return true;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// Reads one field. `bytes` receives a length-delimited field's payload;
// groups (wire types 3/4, obsolete but legal) are skipped whole. False if
// the field is malformed.
bool NextField(Wire& w, uint64_t& field, uint64_t& type, std::string_view& bytes, int depth) {
  uint64_t key = 0, ignored = 0;
  if (!w.Varint(key)) return false;
  field = key >> 3;
  type = key & 7;
  if (field == 0 || field > (uint64_t{1} << 29) - 1) return false;
  switch (type) {
    case 0:
      return w.Varint(ignored);
    case 1:
      return w.Skip(8);
    case 2:
      return w.Bytes(bytes);
    case 3:
      if (depth >= 64) return false;
      for (;;) {
        uint64_t f = 0, t = 0;
        std::string_view b;
        if (w.done() || !NextField(w, f, t, b, depth + 1)) return false;
        if (t == 4) return f == field;
      }
    case 4:
      return true;  // the end of a group: the group's reader checks it
    case 5:
      return w.Skip(4);
    default:
      return false;
  }
}

// Calls fn(field, payload) for each length-delimited field of `msg`. False
// if `msg` is not a well-formed message.
template <class Fn>
bool ForEachBytesField(std::string_view msg, Fn&& fn) {
  Wire w(msg);
  while (!w.done()) {
    uint64_t field = 0, type = 0;
    std::string_view bytes;
    if (!NextField(w, field, type, bytes, 0) || type == 4) return false;
    if (type == 2 && !fn(field, bytes)) return false;
  }
  return true;
}

// ---- Darts-clone double-array units (what SentencePiece's search reads).

uint64_t UnitOffset(uint32_t u) { return uint64_t{u >> 10} << ((u & (1u << 9)) >> 6); }
bool UnitHasLeaf(uint32_t u) { return (u >> 8) & 1; }
uint32_t UnitLabel(uint32_t u) { return u & ((1u << 31) | 0xFFu); }
uint32_t UnitValue(uint32_t u) { return u & ((1u << 31) - 1); }

}  // namespace

void CheckPrecompiledCharsMap(std::string_view blob, const std::string& what) {
  if (blob.empty()) return;
  auto bad = [&](const std::string& why) { throw Error(what + ": " + why); };
  if (blob.size() <= 4) bad("too short for its 4-byte trie size");
  uint32_t trie_bytes = 0;
  std::memcpy(&trie_bytes, blob.data(), 4);
  if (trie_bytes > blob.size() - 4) {
    bad("trie size " + std::to_string(trie_bytes) + " runs past the " +
        std::to_string(blob.size()) + "-byte blob");
  }
  const uint64_t n = trie_bytes / 4;  // units, as SentencePiece counts them
  if (n == 0) bad("the trie is empty");
  const char* units = blob.data() + 4;
  const std::string_view strings = blob.substr(4 + uint64_t{trie_bytes});
  // Replacement strings are read up to a NUL: the table must end with one.
  if (!strings.empty() && strings.back() != '\0') bad("replacement strings are not terminated");
  auto unit = [&](uint64_t i) {
    uint32_t u = 0;
    std::memcpy(&u, units + 4 * i, 4);
    return u;
  };

  // A search starts at the root's offset and, for every input byte b,
  // reads unit[state ^ b]; a unit whose label is b moves to
  // (state ^ b) ^ offset, and one with the leaf flag also reads the value
  // at that new state (an index into the strings) and counts one match.
  // So every state reachable from the root must have all 256 neighbours in
  // the trie ((state | 255) < n). Depth-first over the reachable states
  // (a DAG: Darts-clone shares suffix states), with cycle detection and, per
  // state, the most matches on any path from it.
  enum : uint8_t { kNew, kOpen, kDone };
  std::vector<uint8_t> status(n, kNew), most(n, 0);
  struct Frame {
    uint64_t state;
    uint32_t label;  // next byte to try
    uint32_t best;   // most matches found so far from `state`
  };
  std::vector<Frame> stack;
  auto enter = [&](uint64_t state) {
    if ((state | 0xFF) >= n) {
      bad("trie state " + std::to_string(state) + " lies outside its " + std::to_string(n) +
          " units");
    }
    status[state] = kOpen;
    stack.push_back({state, 0, 0});
  };
  enter(UnitOffset(unit(0)));
  while (!stack.empty()) {
    const uint64_t state = stack.back().state;
    const uint32_t b = stack.back().label;
    if (b == 256) {
      most[state] = static_cast<uint8_t>(stack.back().best);
      status[state] = kDone;
      stack.pop_back();
      continue;
    }
    const uint64_t at = state ^ b;
    const uint32_t u = unit(at);
    if (UnitLabel(u) != b) {
      ++stack.back().label;
      continue;
    }
    const uint64_t next = at ^ UnitOffset(u);
    if (next < n && status[next] == kOpen) bad("the trie has a cycle");
    if (next >= n || status[next] == kNew) {
      enter(next);  // throws if `next` is outside; revisits this label when done
      continue;
    }
    const bool leaf = UnitHasLeaf(u);
    if (leaf && UnitValue(unit(next)) >= strings.size()) {
      bad("a rule's replacement at " + std::to_string(UnitValue(unit(next))) +
          " lies outside the " + std::to_string(strings.size()) + "-byte string table");
    }
    const uint32_t matches = (leaf ? 1u : 0u) + most[next];
    if (matches > kMaxMatches) {
      bad("an input can match more than " + std::to_string(kMaxMatches) + " rules");
    }
    stack.back().best = std::max(stack.back().best, matches);
    ++stack.back().label;
  }
}

void CheckSentencePieceProto(std::string_view proto, const std::string& source) {
  const std::string not_valid = source + " is not a valid SentencePiece model: ";
  // ModelProto: 3 = normalizer_spec, 5 = denormalizer_spec; in each,
  // 2 = precompiled_charsmap. Every occurrence is checked (protobuf merges
  // repeated ones, the last value winning).
  const bool well_formed = ForEachBytesField(proto, [&](uint64_t field, std::string_view spec) {
    if (field != 3 && field != 5) return true;
    const std::string name = field == 3 ? "normalizer_spec" : "denormalizer_spec";
    return ForEachBytesField(spec, [&](uint64_t f, std::string_view charsmap) {
      if (f != 2) return true;
      try {
        CheckPrecompiledCharsMap(charsmap, name + ".precompiled_charsmap");
      } catch (const Error& e) {
        throw Error(not_valid + e.what());
      }
      return true;
    });
  });
  if (!well_formed) throw Error(not_valid + "malformed protobuf");
}

}  // namespace qlm
