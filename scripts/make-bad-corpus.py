#!/usr/bin/env python3
"""Generates qlm's malformed-file corpus and fuzz seeds (Python 3 stdlib only).

  scripts/make-bad-corpus.py                      # rewrite tests/data/bad/ (committed)
  scripts/make-bad-corpus.py --out DIR            # the same corpus somewhere else
  scripts/make-bad-corpus.py --from-shared SHARED --out DIR
        # cases cut from ../shared's real fixtures (MBs: generated at test time,
        # never committed): tiny-llama's safetensors truncated at every
        # structural boundary, and its header corrupted in place
  scripts/make-bad-corpus.py --seeds DIR [--shared SHARED]
        # seed corpora for the fuzz targets (fuzz/), one folder per target

The committed corpus is built from scratch, not copied from ../shared: a tiny
Llama model (vocab 24, hidden 8, one layer) with its own 24-piece
SentencePiece tokenizer, a tiny AutoGPTQ checkpoint and a tiny .qlm file, each
a few KB, then broken one way per case. tests/data/bad/MANIFEST lists every
case (tab-separated): kind, path, expected outcome, and a phrase the error
message must contain. Kinds:
  hf     a Hugging Face model directory, run through `qlm logits -m DIR`
  qlm    a .qlm file, read by ParseQlmFile (with tensor checksums verified)
  gptq   an AutoGPTQ directory: settings, stored tensors and the q4 repack
  tok    a tokenizer.model read by Tokenizer::FromSerializedProto
Expected outcome "ok" marks the valid controls each family is broken from.

Output is deterministic (fixed seeds), so rerunning gives identical files.
"""

import argparse
import json
import math
import os
import random
import shutil
import struct
import sys

# ---------------------------------------------------------------- XXH64

_P1, _P2, _P3 = 11400714785074694791, 14029467366897019727, 1609587929392839161
_P4, _P5 = 9650029242287828579, 2870177450012600261
_M64 = (1 << 64) - 1


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & _M64


def _round(acc, lane):
    acc = (acc + lane * _P2) & _M64
    return (_rotl(acc, 31) * _P1) & _M64


def _merge(acc, v):
    acc ^= _round(0, v)
    return (acc * _P1 + _P4) & _M64


def xxh64(data, seed=0):
    """XXH64 as in loaders/xxh64.h (the .qlm checksums)."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M64, (seed + _P2) & _M64, seed, (seed - _P1) & _M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = _round(v[k], struct.unpack_from("<Q", data, i + 8 * k)[0])
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M64
        for k in range(4):
            h = _merge(h, v[k])
    else:
        h = (seed + _P5) & _M64
    h = (h + n) & _M64
    while i + 8 <= n:
        h ^= _round(0, struct.unpack_from("<Q", data, i)[0])
        h = (_rotl(h, 27) * _P1 + _P4) & _M64
        i += 8
    if i + 4 <= n:
        h ^= (struct.unpack_from("<I", data, i)[0] * _P1) & _M64
        h = (_rotl(h, 23) * _P2 + _P3) & _M64
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _M64
        h = (_rotl(h, 11) * _P1) & _M64
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M64
    h ^= h >> 29
    h = (h * _P3) & _M64
    h ^= h >> 32
    return h


assert xxh64(b"") == 0xEF46DB3751D8E999
assert xxh64(b"Nobody inspects the spammish repetition") == 0xFBCEA83C8A378BF1

# ---------------------------------------------------------------- numbers


def f32_to_bf16(x):
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    return (b + 0x7FFF + ((b >> 16) & 1)) >> 16  # round to nearest even (finite inputs)


def f16_bits(x):
    return struct.unpack("<H", struct.pack("<e", x))[0]


F16_NAN, F16_INF = 0x7E00, 0x7C00


def dtype_size(dtype):
    return {"F32": 4, "I32": 4, "BF16": 2, "F16": 2, "F64": 8, "I8": 1}[dtype]


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def encode_values(dtype, values):
    if dtype == "F32":
        return struct.pack("<%df" % len(values), *values)
    if dtype == "BF16":
        return struct.pack("<%dH" % len(values), *[f32_to_bf16(v) for v in values])
    if dtype == "F16":
        return struct.pack("<%dH" % len(values), *[f16_bits(v) for v in values])
    if dtype == "I32":
        return struct.pack("<%di" % len(values), *values)
    raise ValueError(dtype)


# ---------------------------------------------------------------- safetensors


class Tensor:
    def __init__(self, name, dtype, shape, data):
        self.name, self.dtype, self.shape, self.data = name, dtype, list(shape), data


def safetensors_bytes(tensors, header_edit=None, metadata=None):
    """A safetensors file; header_edit(dict) may corrupt the header JSON."""
    header = {"__metadata__": metadata if metadata is not None else {"format": "pt"}}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": t.shape,
                          "data_offsets": [offset, offset + len(t.data)]}
        offset += len(t.data)
    if header_edit:
        header_edit(header)
    text = header if isinstance(header, (bytes, bytearray)) else \
        json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(text) + 8) % 8)  # data section 8-byte aligned, as writers do
    return struct.pack("<Q", len(text)) + text + b"".join(t.data for t in tensors)


def safetensors_layout(data):
    """(header_len, header dict, data_offset) of a safetensors file."""
    n = struct.unpack_from("<Q", data, 0)[0]
    return n, json.loads(data[8:8 + n]), 8 + n


# ---------------------------------------------------------------- protobuf / SentencePiece


def _varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_varint(field, v):
    return _varint(field << 3) + _varint(v)


def pb_bytes(field, b):
    return _varint(field << 3 | 2) + _varint(len(b)) + b


def pb_float(field, x):
    return _varint(field << 3 | 5) + struct.pack("<f", x)


def pb_raw_fields(b):
    """Top-level fields as their raw encoded bytes (to copy selectively)."""
    out, i = [], 0

    def varint(i):
        r = s = 0
        while True:
            c = b[i]
            i += 1
            r |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return r, i

    while i < len(b):
        start = i
        key, i = varint(i)
        w = key & 7
        if w == 0:
            _, i = varint(i)
        elif w == 1:
            i += 8
        elif w == 5:
            i += 4
        elif w == 2:
            n, i = varint(i)
            i += n
        else:
            raise ValueError("wire type %d" % w)
        out.append((key >> 3, b[start:i]))
    return out


NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def sp_piece(piece, score, ptype=NORMAL):
    b = pb_bytes(1, piece.encode()) + pb_float(2, score)
    if ptype != NORMAL:
        b += pb_varint(3, ptype)
    return pb_bytes(1, b)


def tiny_tokenizer(extra_pieces=0, with_unk=True, with_pieces=True):
    """A 24-piece SentencePiece BPE model: ids 0 <pad>, 1 </s>, 2 <s>, 3 <unk>."""
    pieces = [("<pad>", 0.0, CONTROL), ("</s>", 0.0, CONTROL), ("<s>", 0.0, CONTROL)]
    if with_unk:
        pieces.append(("<unk>", 0.0, UNKNOWN))
    words = ["\u2581t", "he", "\u2581a", "in", "\u2581", "e", "t", "a", "o", "n", "i", "s",
             "h", "r", "d", "l", "u", "m", "w", "c"]
    words += ["x%d" % i for i in range(extra_pieces)]
    pieces += [(w, -float(i), NORMAL) for i, w in enumerate(words)]
    body = b"".join(sp_piece(*p) for p in pieces) if with_pieces else b""
    trainer = (pb_varint(3, 2) + pb_varint(4, len(pieces)) + pb_varint(40, 3) +
               pb_varint(41, 2) + pb_varint(42, 1) + pb_varint(43, 0))
    normalizer = pb_bytes(1, b"identity") + pb_varint(3, 0) + pb_varint(4, 0)
    return body + pb_bytes(2, trainer) + pb_bytes(3, normalizer)


def shrink_tokenizer(proto, keep):
    """The first `keep` pieces of a real tokenizer.model plus its specs."""
    out, n = [], 0
    for field, raw in pb_raw_fields(proto):
        if field == 1:
            if n < keep:
                out.append(raw)
            n += 1
        else:
            out.append(raw)
    return b"".join(out)


def charsmap(units, strings):
    """A SentencePiece precompiled_charsmap: [u32 trie bytes][units][strings]."""
    return struct.pack("<I", 4 * len(units)) + struct.pack("<%dI" % len(units), *units) + strings


def charsmap_chain(steps, cycle=False):
    """Units of a trie matching "a", "aa", ... (`steps` rules, all -> "x"); with
    cycle, the last edge leads back to the first state (unbounded matches)."""
    units = [0x80000000] * (256 * (steps + 2))
    units[0] = 256 << 10  # root state 256
    for s in range(1, steps + 1):
        state = 256 * s
        at = state ^ ord("a")
        nxt = 256 if cycle and s == steps else state + 256
        units[at] = ((at ^ nxt) << 10) | (1 << 8) | ord("a")
        units[state + 256] = 0x80000000  # the rule's replacement: string 0
    return units


def with_normalizer(tok, blob, self_test=False):
    """tok plus a normalizer_spec carrying `blob` (protobuf merges it into the
    existing spec); self_test adds a sample SentencePiece encodes at load."""
    out = tok + pb_bytes(3, pb_bytes(2, blob))
    if self_test:
        out += pb_bytes(4, pb_bytes(1, pb_bytes(1, b"the hat") + pb_bytes(2, b"\xe2\x96\x81the")))
    return out


GARBAGE_CHARSMAP = b"\x10\x00\x00\x00" + b"\xff" * 20

# ---------------------------------------------------------------- the tiny models

VOCAB, HIDDEN, FF, HEADS, KV_HEADS = 24, 8, 16, 2, 1
HEAD_DIM = HIDDEN // HEADS


def tiny_config(**changes):
    c = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB,
        "hidden_size": HIDDEN, "intermediate_size": FF, "num_hidden_layers": 1,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": 2,
        "eos_token_id": 1, "torch_dtype": "bfloat16",
    }
    c.update(changes)
    return {k: v for k, v in c.items() if v is not None}


def tiny_shapes(hidden=HIDDEN, ff=FF, vocab=VOCAB, heads=HEADS, kv=KV_HEADS, tied=False):
    hd = hidden // heads
    p = "model.layers.0."
    shapes = [("model.embed_tokens.weight", [vocab, hidden])]
    if not tied:
        shapes.append(("lm_head.weight", [vocab, hidden]))
    shapes += [
        ("model.norm.weight", [hidden]),
        (p + "input_layernorm.weight", [hidden]),
        (p + "post_attention_layernorm.weight", [hidden]),
        (p + "self_attn.q_proj.weight", [heads * hd, hidden]),
        (p + "self_attn.k_proj.weight", [kv * hd, hidden]),
        (p + "self_attn.v_proj.weight", [kv * hd, hidden]),
        (p + "self_attn.o_proj.weight", [hidden, heads * hd]),
        (p + "mlp.gate_proj.weight", [ff, hidden]),
        (p + "mlp.up_proj.weight", [ff, hidden]),
        (p + "mlp.down_proj.weight", [hidden, ff]),
    ]
    return shapes


def random_values(rng, n, norm):
    return [1.0 + 0.1 * rng.uniform(-1, 1) if norm else 0.5 * rng.uniform(-1, 1)
            for _ in range(n)]


def tiny_tensors(rng, dtype="BF16"):
    return [Tensor(name, dtype, shape,
                   encode_values(dtype, random_values(rng, numel(shape), len(shape) == 1)))
            for name, shape in tiny_shapes()]


def config_bytes(c):
    return (json.dumps(c, indent=2) + "\n").encode() if isinstance(c, dict) else c


# ---------------------------------------------------------------- .qlm

QLM_MAGIC = b"\x89QLM\r\n\x1a\n"


def align(n, a=64):
    return (n + a - 1) // a * a


def blob_layout(fmt, rows, cols, group=0, has_perm=False):
    """MakeTensorDesc (quant/format.h): section sizes and the blob's size."""
    if fmt == "f32":
        padded, row_bytes, group = cols, cols * 4, 0
    elif fmt == "bf16":
        padded, row_bytes, group = cols, cols * 2, 0
    elif fmt == "sfp8":
        padded, row_bytes, group = cols, cols, 0
    elif fmt == "int8":
        group = 32
        padded = align(cols, 32)
        row_bytes = padded
    elif fmt == "q4":
        padded = align(cols, 64)
        row_bytes = padded // 2
    gpr = (padded + group - 1) // group if group else 0
    sections = [("data", rows * row_bytes)]
    if fmt in ("int8", "q4"):
        sections.append(("scales", rows * gpr * 2))
    if fmt == "q4":
        sections.append(("zeros", rows * gpr))
    if has_perm:
        sections.append(("perm", cols * 4))
    layout, off = {}, 0
    for name, size in sections:
        layout[name] = (off, size)
        off = align(off + size)
    return layout, off, group, gpr


def qlm_blob(rng, fmt, rows, cols, group=0, perm=None):
    layout, total, group, gpr = blob_layout(fmt, rows, cols, group, perm is not None)
    blob = bytearray(total)

    def put(section, data):
        off, size = layout[section]
        assert len(data) == size, (section, len(data), size)
        blob[off:off + size] = data

    off, size = layout["data"]
    if fmt == "f32":
        put("data", encode_values("F32", random_values(rng, rows * cols, rows == 1)))
    elif fmt == "bf16":
        put("data", encode_values("BF16", random_values(rng, rows * cols, rows == 1)))
    else:
        put("data", bytes(rng.randrange(256) for _ in range(size)))
    if "scales" in layout:
        put("scales", struct.pack("<%dH" % (rows * gpr),
                                  *[f16_bits(rng.uniform(0.01, 0.1)) for _ in range(rows * gpr)]))
    if "zeros" in layout:
        put("zeros", bytes(rng.randrange(16) for _ in range(rows * gpr)))
    if perm is not None:
        put("perm", struct.pack("<%di" % cols, *perm))
    return bytes(blob)


def qlm_file(tokenizer, config, tensors, edit_meta=None, meta_text=None):
    """A .qlm file (docs/formats.md). tensors: [(name, format, shape, group, perm_or_None,
    tensor_scale, blob)]. edit_meta(dict) may corrupt the metadata before it is written
    (checksums are computed after, so the corruption itself is what the reader meets)."""
    data = bytearray(128)
    tok_off = 128 if tokenizer else 0
    data += tokenizer
    entries = []
    for name, fmt, shape, group, perm, scale, blob in tensors:
        data += b"\0" * (align(len(data)) - len(data))
        entries.append({"name": name, "format": fmt, "shape": shape, "group_size": group,
                        "has_perm": perm is not None, "tensor_scale": scale,
                        "offset": len(data), "bytes": len(blob),
                        "xxh64": "%016x" % xxh64(blob)})
        data += blob
    data += b"\0" * (align(len(data)) - len(data))
    meta = {"config": json.dumps(config), "generation_config": None,
            "quantization": {"format": "mixed", "method": "rtn", "source": "make-bad-corpus"},
            "tokenizer": {"offset": tok_off, "bytes": len(tokenizer),
                          "xxh64": "%016x" % xxh64(tokenizer)},
            "tensors": entries}
    if edit_meta:
        edit_meta(meta)
    text = meta_text if meta_text is not None else json.dumps(meta, separators=(",", ":")).encode()
    meta_off = len(data)
    data += text
    data += b"\0" * (align(len(data), 4096) - len(data))
    header = bytearray(128)
    header[0:8] = QLM_MAGIC
    struct.pack_into("<IIII", header, 8, 1, 0x0A0B0C0D, 128, 0)
    struct.pack_into("<QQQQQQ", header, 24, len(data), 128, meta_off - 128, meta_off, len(text),
                     xxh64(text))
    struct.pack_into("<Q", header, 120, xxh64(bytes(header[:120])))
    data[0:128] = header
    return bytes(data)


def qlm_rehash_header(data):
    data = bytearray(data)
    struct.pack_into("<Q", data, 120, xxh64(bytes(data[:120])))
    return bytes(data)


def tiny_qlm_tensors(rng):
    """The tiny model in every qlm format (q4 with an act-order permutation)."""
    fmts = {"model.embed_tokens.weight": ("f32", 0),
            "lm_head.weight": ("bf16", 0),
            "model.layers.0.self_attn.q_proj.weight": ("q4", 32),
            "model.layers.0.self_attn.k_proj.weight": ("int8", 32),
            "model.layers.0.self_attn.v_proj.weight": ("sfp8", 0),
            "model.layers.0.mlp.down_proj.weight": ("q4", 64)}
    out = []
    for name, shape in tiny_shapes():
        fmt, group = fmts.get(name, ("f32", 0))
        rows, cols = (shape[0], shape[1]) if len(shape) == 2 else (1, shape[0])
        perm = None
        if name.endswith("q_proj.weight"):
            perm = list(range(cols))
            rng.shuffle(perm)
        scale = 0.0625 if fmt == "sfp8" else 1.0
        out.append((name, fmt, shape, group, perm, scale,
                    qlm_blob(rng, fmt, rows, cols, group, perm)))
    return out


# ---------------------------------------------------------------- GPTQ

G_HIDDEN, G_FF, G_HEADS, G_KV, G_GROUP = 32, 64, 2, 1, 32
GPTQ_LINEARS = [  # (suffix, N outputs, K inputs)
    ("self_attn.q_proj", G_HIDDEN, G_HIDDEN),
    ("self_attn.k_proj", G_KV * G_HIDDEN // G_HEADS, G_HIDDEN),
    ("self_attn.v_proj", G_KV * G_HIDDEN // G_HEADS, G_HIDDEN),
    ("self_attn.o_proj", G_HIDDEN, G_HIDDEN),
    ("mlp.gate_proj", G_FF, G_HIDDEN),
    ("mlp.up_proj", G_FF, G_HIDDEN),
    ("mlp.down_proj", G_HIDDEN, G_FF),
]


def gptq_config(**qc_changes):
    qc = {"quant_method": "gptq", "bits": 4, "group_size": G_GROUP, "sym": True,
          "desc_act": True, "checkpoint_format": "gptq"}
    qc.update(qc_changes)
    qc = {k: v for k, v in qc.items() if v is not None}
    return tiny_config(hidden_size=G_HIDDEN, intermediate_size=G_FF, tie_word_embeddings=True,
                       torch_dtype="float16", quantization_config=qc)


def gptq_tensors(rng, edit=None):
    """The tiny GPTQ checkpoint's tensors; edit(name, dict of arrays) may corrupt one linear.
    Arrays: qweight/qzeros/g_idx lists of int32, scales list of f16 bits."""
    tensors = [Tensor("model.embed_tokens.weight", "F16", [VOCAB, G_HIDDEN],
                      encode_values("F16", random_values(rng, VOCAB * G_HIDDEN, False)))]
    for name in ["model.norm.weight", "model.layers.0.input_layernorm.weight",
                 "model.layers.0.post_attention_layernorm.weight"]:
        tensors.append(Tensor(name, "F16", [G_HIDDEN],
                              encode_values("F16", random_values(rng, G_HIDDEN, True))))
    for suffix, n, k in GPTQ_LINEARS:
        groups = (k + G_GROUP - 1) // G_GROUP
        order = list(range(k))
        rng.shuffle(order)  # act-order: input order[j] belongs to group j // G_GROUP
        g_idx = [0] * k
        for j, kk in enumerate(order):
            g_idx[kk] = j // G_GROUP
        arrays = {
            "qweight": [rng.randrange(-2**31, 2**31) for _ in range(k // 8 * n)],
            # stored zero points 0..14 (v1: z = stored + 1 <= 15)
            "qzeros": [sum(rng.randrange(15) << (4 * b) for b in range(8))
                       for _ in range(groups * n // 8)],
            "scales": [f16_bits(rng.uniform(0.005, 0.05)) for _ in range(groups * n)],
            "g_idx": g_idx,
        }
        arrays["qzeros"] = [z - (1 << 32) if z >= 1 << 31 else z for z in arrays["qzeros"]]
        dtypes = {"qweight": "I32", "qzeros": "I32", "scales": "F16", "g_idx": "I32"}
        shapes = {"qweight": [k // 8, n], "qzeros": [groups, n // 8], "scales": [groups, n],
                  "g_idx": [k]}
        name = "model.layers.0." + suffix
        if edit:
            edit(name, arrays, dtypes, shapes)
        for part in ["qweight", "qzeros", "scales", "g_idx"]:
            if part not in arrays:
                continue
            vals = arrays[part]
            dt = dtypes[part]
            if part == "scales" and dt == "F16":
                data = struct.pack("<%dH" % len(vals), *vals)
            elif dt == "F32":
                data = struct.pack("<%df" % len(vals), *[float(v) for v in vals])
            else:
                data = struct.pack("<%di" % len(vals), *vals)
            tensors.append(Tensor(name + "." + part, dt, shapes[part], data))
    return tensors


# ---------------------------------------------------------------- writing cases


class Corpus:
    def __init__(self, out):
        self.out = out
        self.manifest = []

    def _path(self, rel):
        p = os.path.join(self.out, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def write(self, rel, data):
        with open(self._path(rel), "wb") as f:
            f.write(data)

    def dir_case(self, kind, name, files, outcome, expect, cli="same"):
        """files: {filename: bytes or None (absent)}."""
        rel = os.path.join(kind, name)
        for fname, data in files.items():
            if data is not None:
                self.write(os.path.join(rel, fname), data)
        self.manifest.append((kind, rel, outcome, expect, cli))

    def file_case(self, kind, rel, data, outcome, expect, cli="same"):
        self.write(rel, data)
        self.manifest.append((kind, rel, outcome, expect, cli))

    def finish(self, header):
        with open(os.path.join(self.out, "MANIFEST"), "w") as f:
            f.write(header)
            for row in self.manifest:
                assert "\t" not in "".join(row) and "\n" not in "".join(row), row
                f.write("\t".join(row) + "\n")


MANIFEST_HEADER = """\
# Generated by scripts/make-bad-corpus.py; do not edit by hand.
# kind<TAB>path (relative to this folder)<TAB>ok|error<TAB>phrase the error must contain<TAB>cli
# cli: what `qlm logits -m PATH` must do with it: "same" (the same outcome and
# phrase), "any" (fail, with its own message), "ok" (load: qlm's policy
# accepts it, e.g. tensor checksums are verified only with --verify).
"""


def hf_cases(c, rng):
    tok = tiny_tokenizer()
    cfg = tiny_config()
    good_tensors = tiny_tensors(random.Random(1))
    good_st = safetensors_bytes(good_tensors)

    def case(name, expect, config=cfg, st=good_st, tokenizer=tok, extra=None, outcome="error"):
        files = {"config.json": config_bytes(config) if config is not None else None,
                 "model.safetensors": st, "tokenizer.model": tokenizer}
        files.update(extra or {})
        c.dir_case("hf", name, files, outcome, expect)

    case("good", "", outcome="ok")

    # --- safetensors: truncated at every structural boundary
    hlen, header, data_off = safetensors_layout(good_st)
    case("st_empty", "too short", st=b"")
    case("st_trunc_in_length", "too short", st=good_st[:5])
    case("st_trunc_after_length", "larger than", st=good_st[:8])
    case("st_trunc_in_header", "larger than", st=good_st[:8 + hlen // 2])
    case("st_trunc_after_header", "run past the data section", st=good_st[:data_off])
    ends = sorted(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    first_end = ends[0]
    case("st_trunc_in_first_tensor", "run past the data section",
         st=good_st[:data_off + first_end // 2])
    case("st_trunc_at_tensor_boundary", "run past the data section",
         st=good_st[:data_off + ends[len(ends) // 2]])
    case("st_trunc_last_byte", "run past the data section", st=good_st[:-1])
    case("st_appended_junk", "belong to no tensor", st=good_st + b"\0" * 16)

    # --- safetensors: header length and header JSON
    case("st_header_len_past_eof", "larger than",
         st=struct.pack("<Q", len(good_st)) + good_st[8:])
    case("st_header_len_huge", "larger than", st=struct.pack("<Q", 2**64 - 1) + good_st[8:])
    case("st_header_len_zero", "JSON object", st=struct.pack("<Q", 0) + good_st[8:])
    case("st_header_not_json", "not valid JSON",
         st=struct.pack("<Q", 16) + b"{\"a\": [1, 2, 3, xx")
    case("st_header_array", "JSON object", st=struct.pack("<Q", 8) + b"[1,2,3] ")
    bad_utf8 = b"{\"\xff\xfe\": 1}"
    case("st_header_invalid_utf8", "not valid JSON", st=struct.pack("<Q", len(bad_utf8)) + bad_utf8)
    nested = b"{\"x\":" + b"[" * 20000 + b"]" * 20000 + b"}"
    case("st_header_deeply_nested", "entry must be a JSON object",
         st=struct.pack("<Q", len(nested)) + nested)

    def st_edit(name, fn, tensors=good_tensors):
        return safetensors_bytes(tensors, header_edit=fn)

    E = "model.embed_tokens.weight"
    Q = "model.layers.0.self_attn.q_proj.weight"
    N = "model.norm.weight"

    def set_field(tname, key, value):
        def fn(h):
            h[tname][key] = value
        return fn

    # --- offsets
    def overlap(h):
        b, e = h[Q]["data_offsets"]
        h[Q]["data_offsets"] = [b - 2, e - 2]
    case("st_overlapping_offsets", "overlap", st=st_edit("", overlap))

    def past_end(h):
        last = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][1])
        b, e = h[last]["data_offsets"]
        h[last]["data_offsets"] = [b, e + 2]
    case("st_offsets_out_of_range", "run past the data section", st=st_edit("", past_end))

    def hole(h):
        b, e = h[N]["data_offsets"]
        h[N]["data_offsets"] = [b + 2, e + 2]
    case("st_offsets_leave_hole", "belong to no tensor", st=st_edit("", hole))
    case("st_offsets_reversed", "end before they begin",
         st=st_edit("", lambda h: h[E].update(data_offsets=h[E]["data_offsets"][::-1])))
    case("st_offsets_huge", "run past the data section",
         st=st_edit("", set_field(E, "data_offsets", [0, 2**64 - 1])))
    case("st_offsets_negative", "negative",
         st=st_edit("", set_field(E, "data_offsets", [-16, 0])))
    case("st_offsets_three", "array of two integers",
         st=st_edit("", set_field(E, "data_offsets", [0, 1, 2])))
    case("st_offsets_strings", "non-negative integer",
         st=st_edit("", set_field(E, "data_offsets", ["0", "384"])))
    case("st_offsets_float", "non-negative integer",
         st=st_edit("", set_field(E, "data_offsets", [0.0, 384.5])))

    def dup(h):
        h["model.layers.0.mlp.up_proj.weight"]["data_offsets"] = \
            h["model.layers.0.mlp.gate_proj.weight"]["data_offsets"]
    case("st_two_tensors_same_bytes", "overlap", st=st_edit("", dup))

    # --- shapes
    case("st_negative_dim", "negative", st=st_edit("", set_field(E, "shape", [-24, 8])))
    case("st_overflowing_shape", "overflows",
         st=st_edit("", set_field(E, "shape", [2**62, 2**62, 16])))
    case("st_dim_too_large", "too large", st=st_edit("", set_field(E, "shape", [2**64 - 1])))
    case("st_int64_wrapping_zero_size", "shape",
         st=st_edit("", set_field(N, "shape", [2**62, 3, 0])))
    case("st_shape_bytes_mismatch", "bytes but data_offsets span",
         st=st_edit("", set_field(E, "shape", [24, 9])))
    case("st_shape_not_array", "array of integers", st=st_edit("", set_field(E, "shape", 192)))
    case("st_shape_float_dim", "non-negative integer",
         st=st_edit("", set_field(E, "shape", [24.0, 8])))

    # --- dtypes
    case("st_unknown_dtype", "is not supported", st=st_edit("", set_field(E, "dtype", "F64")))
    case("st_dtype_not_string", "must be a string", st=st_edit("", set_field(E, "dtype", 7)))
    case("st_missing_dtype", "missing \"dtype\"",
         st=st_edit("", lambda h: h[E].pop("dtype")))
    case("st_entry_not_object", "JSON object", st=st_edit("", lambda h: h.update({E: [1]})))
    case("st_metadata_not_strings", "__metadata__",
         st=safetensors_bytes(good_tensors, metadata={"format": 1}))

    # --- tensors against config.json
    wrong_dtype = [Tensor(t.name, "I32", t.shape, t.data + t.data) if t.name == E else t
                   for t in good_tensors]
    case("wrong_dtype_for_tensor", "a float tensor", st=safetensors_bytes(wrong_dtype))
    mism = [Tensor(t.name, t.dtype, [4, 16], t.data) if t.name == Q else t for t in good_tensors]
    case("shape_mismatch_with_config", "expected [8, 8]", st=safetensors_bytes(mism))
    extra_dim = [Tensor(t.name, t.dtype, [HIDDEN, 1], t.data) if t.name == N else t
                 for t in good_tensors]
    case("norm_with_extra_dim", "expected [8]", st=safetensors_bytes(extra_dim))
    missing = [t for t in good_tensors if t.name != "lm_head.weight"]
    case("missing_tensor", "missing tensor lm_head.weight", st=safetensors_bytes(missing))
    zero = [Tensor(t.name, t.dtype, [0], b"") if t.name == N else t for t in good_tensors]
    case("zero_size_tensor", "expected [8]", st=safetensors_bytes(zero))
    zero_embed = [Tensor(t.name, t.dtype, [0, HIDDEN], b"") if t.name == E else t
                  for t in good_tensors]
    case("zero_size_embedding", "expected [24, 8]", st=safetensors_bytes(zero_embed))
    biased = good_tensors + [Tensor("model.layers.0.self_attn.q_proj.bias", "BF16", [8],
                                    encode_values("BF16", [0.0] * 8))]
    case("attention_bias", "biases are not supported", st=safetensors_bytes(biased))

    # --- config.json
    case("cfg_missing", "no config.json", config=None)
    case("cfg_not_json", "not valid JSON", config=b"{\"model_type\": \"llama\",")
    case("cfg_not_object", "must be a JSON object", config=b"[1, 2, 3]\n")
    case("cfg_empty", "not valid JSON", config=b"")
    case("cfg_unknown_model_type", "unknown model_type", config=tiny_config(model_type="gpt2"))
    case("cfg_missing_vocab", "missing required key \"vocab_size\"",
         config=tiny_config(vocab_size=None))
    case("cfg_zero_heads", "num_attention_heads", config=tiny_config(num_attention_heads=0))
    case("cfg_zero_kv_heads", "num_key_value_heads", config=tiny_config(num_key_value_heads=0))
    case("cfg_heads_not_multiple_of_kv", "not a multiple of num_key_value_heads",
         config=tiny_config(num_attention_heads=3, num_key_value_heads=2, head_dim=4))
    case("cfg_heads_not_dividing_hidden", "does not divide hidden_size",
         config=tiny_config(num_attention_heads=3, num_key_value_heads=1))
    case("cfg_negative_layers", "num_hidden_layers", config=tiny_config(num_hidden_layers=-1))
    case("cfg_heads_as_string", "must be an integer", config=tiny_config(num_attention_heads="2"))
    case("cfg_heads_as_float", "must be an integer", config=tiny_config(num_attention_heads=2.0))
    case("cfg_vocab_as_null", "must be an integer", config=tiny_config(vocab_size=None) | {
        "vocab_size": None})
    case("cfg_vocab_too_large", "too large", config=tiny_config(vocab_size=2**40))
    case("cfg_huge_vocab", "expected [2147483647, 8]", config=tiny_config(vocab_size=2**31 - 1))
    case("cfg_huge_hidden", "expected [24, 2147483646]",
         config=tiny_config(hidden_size=2**31 - 2, head_dim=4))
    case("cfg_huge_layers", "more than qlm supports", config=tiny_config(
        num_hidden_layers=2**31 - 1))
    case("cfg_more_layers_than_file", "missing tensor model.layers.1.", config=tiny_config(
        num_hidden_layers=65536))
    case("cfg_bos_outside_vocab", "bos_token_id", config=tiny_config(bos_token_id=24))
    case("cfg_eos_wrong_type", "eos_token_id", config=tiny_config(eos_token_id=["1"]))
    case("cfg_eps_not_float32", "rms_norm_eps", config=tiny_config(rms_norm_eps=1e300))
    case("cfg_rope_theta_not_float32", "rope_theta", config=tiny_config(rope_theta=1e300))
    case("cfg_rope_theta_infinite", "not valid JSON", config=b"{\"model_type\": \"llama\", "
         b"\"vocab_size\": 24, \"hidden_size\": 8, \"intermediate_size\": 16, "
         b"\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"rope_theta\": 1e999}")
    case("cfg_unknown_rope_type", "rope type", config=tiny_config(
        rope_scaling={"rope_type": "yarn", "factor": 4.0}))
    case("cfg_llama3_rope_high_le_low", "high_freq_factor", config=tiny_config(
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
                      "high_freq_factor": 1.0, "original_max_position_embeddings": 8192}))
    case("cfg_gemma3_layer_types_length", "layer_types", config=tiny_config(
        model_type="gemma3_text", head_dim=4, layer_types=["sliding_attention"] * 3))
    case("cfg_unsupported_activation", "hidden_act", config=tiny_config(hidden_act="relu"))
    case("gen_config_wrong_type", "temperature",
         extra={"generation_config.json": b"{\"temperature\": \"hot\"}\n"})
    case("gen_config_not_json", "not valid JSON",
         extra={"generation_config.json": b"{\"temperature\": \n"})

    # --- sharded index
    half = len(good_tensors) // 2
    shard_a, shard_b = good_tensors[:half], good_tensors[half:]
    names = {t.name: "model-00001-of-00002.safetensors" for t in shard_a}
    names.update({t.name: "model-00002-of-00002.safetensors" for t in shard_b})

    def sharded(name, expect, index, a=shard_a, b=shard_b, outcome="error"):
        files = {"model.safetensors.index.json": index,
                 "model-00001-of-00002.safetensors": safetensors_bytes(a) if a is not None
                 else None,
                 "model-00002-of-00002.safetensors": safetensors_bytes(b) if b is not None
                 else None}
        case(name, expect, st=None, extra=files, outcome=outcome)

    def index(weight_map):
        return json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map},
                          indent=1).encode()

    sharded("idx_good", "", index(names), outcome="ok")
    sharded("idx_not_json", "not valid JSON", b"{\"weight_map\": {")
    sharded("idx_no_weight_map", "has no \"weight_map\"", b"{\"metadata\": {}}")
    sharded("idx_weight_map_array", "must be an object", b"{\"weight_map\": []}")
    sharded("idx_empty_weight_map", "lists no tensors", b"{\"weight_map\": {}}")
    sharded("idx_path_traversal", "not a plain file name",
            index(dict(names, **{E: "../../../../../../etc/passwd"})))
    sharded("idx_shard_not_string", "must be a file name string", index(dict(names, **{E: 1})))
    sharded("idx_missing_shard", "does not exist", index(names), b=None)
    sharded("idx_tensor_in_wrong_shard", "but it is in",
            index(dict(names, **{E: "model-00002-of-00002.safetensors"})))
    sharded("idx_tensor_in_no_shard", "but no shard has it",
            index(dict(names, **{"model.extra.weight": "model-00001-of-00002.safetensors"})))
    sharded("idx_tensor_in_both_shards", "appears in both", index(names),
            b=shard_b + [shard_a[0]])
    files = {"model.safetensors.index.json": index(names),
             "model-00001-of-00002.safetensors": safetensors_bytes(shard_a),
             "model-00002-of-00002.safetensors": safetensors_bytes(shard_b)[:-3]}
    case("idx_shard_truncated", "run past the data section", st=None, extra=files)

    # --- tokenizer.model
    case("tok_missing", "tokenizer", tokenizer=None)
    case("tok_empty", "is empty", tokenizer=b"")
    case("tok_garbage", "not a valid SentencePiece model",
         tokenizer=bytes(random.Random(7).randrange(256) for _ in range(300)))
    case("tok_truncated", "not a valid SentencePiece model", tokenizer=tok[:len(tok) // 2 + 1])
    case("tok_no_pieces", "SentencePiece", tokenizer=tiny_tokenizer(with_pieces=False))
    case("tok_no_unk", "SentencePiece", tokenizer=tiny_tokenizer(with_unk=False))
    case("tok_corrupt_normalizer_trie", "normalizer_spec.precompiled_charsmap",
         tokenizer=with_normalizer(tok, GARBAGE_CHARSMAP, self_test=True))
    case("tok_larger_than_vocab", "pieces but config.json's vocab_size is 24",
         tokenizer=tiny_tokenizer(extra_pieces=8))
    return tok, cfg, good_tensors


def tok_cases(c, tok):
    c.file_case("tok", "tok/good.model", tok, "ok", "")
    c.file_case("tok", "tok/empty.model", b"", "error", "is empty")
    c.file_case("tok", "tok/truncated.model", tok[:-7], "error", "not a valid SentencePiece")
    c.file_case("tok", "tok/huge_length_prefix.model", b"\x0a\xff\xff\xff\xff\x0f" + tok[2:],
                "error", "not a valid SentencePiece")
    c.file_case("tok", "tok/no_pieces.model", tiny_tokenizer(with_pieces=False), "error",
                "SentencePiece")
    c.file_case("tok", "tok/no_unk.model", tiny_tokenizer(with_unk=False), "error",
                "SentencePiece")
    c.file_case("tok", "tok/bad_wire_type.model", b"\x0f" + tok, "error", "malformed protobuf")
    c.file_case("tok", "tok/duplicate_piece.model", sp_piece("he", -5.0) + tok, "error",
                "already defined")
    c.file_case("tok", "tok/empty_piece.model", sp_piece("", -5.0) + tok, "error",
                "must not be empty")
    # A unigram model with a piece "\0": libsentencepiece's trie builder
    # throws a Darts exception (not a Status) out of the load.
    c.file_case("tok", "tok/unigram_nul_piece.model",
                sp_piece("\0", -5.0) + tok + pb_bytes(2, pb_varint(3, 1)), "error",
                "not a valid SentencePiece model")
    c.file_case("tok", "tok/byte_fallback_without_bytes.model",
                tok + pb_bytes(2, pb_varint(35, 1)), "error", "256 byte pieces")
    # The normalizer's trie (libsentencepiece walks it unchecked).
    strings = b"x\0"
    c.file_case("tok", "tok/charsmap_good.model",
                with_normalizer(tok, charsmap(charsmap_chain(3), strings)), "ok", "")
    c.file_case("tok", "tok/charsmap_garbage.model", with_normalizer(tok, GARBAGE_CHARSMAP),
                "error", "normalizer_spec.precompiled_charsmap")
    c.file_case("tok", "tok/charsmap_garbage_self_test.model",
                with_normalizer(tok, GARBAGE_CHARSMAP, self_test=True), "error",
                "normalizer_spec.precompiled_charsmap")
    past = bytearray(charsmap(charsmap_chain(1), strings))
    struct.pack_into("<I", past, 0, len(past) - 2)
    c.file_case("tok", "tok/charsmap_size_past_end.model", with_normalizer(tok, bytes(past)),
                "error", "runs past")
    c.file_case("tok", "tok/charsmap_cycle.model",
                with_normalizer(tok, charsmap(charsmap_chain(2, cycle=True), strings)), "error",
                "cycle")
    c.file_case("tok", "tok/charsmap_33_matches.model",
                with_normalizer(tok, charsmap(charsmap_chain(33), strings)), "error",
                "more than 32 rules")
    far = charsmap_chain(1)
    far[512] = 0x80000000 | 100
    c.file_case("tok", "tok/charsmap_string_outside.model",
                with_normalizer(tok, charsmap(far, strings)), "error", "string table")
    c.file_case("tok", "tok/denormalizer_garbage.model",
                tok + pb_bytes(5, pb_bytes(2, GARBAGE_CHARSMAP)), "error",
                "denormalizer_spec.precompiled_charsmap")


def qlm_cases(c, tok, cfg):
    rng = random.Random(3)
    tensors = tiny_qlm_tensors(rng)
    good = qlm_file(tok, cfg, tensors)

    def case(name, data, expect, outcome="error", cli="same"):
        c.file_case("qlm", "qlm/%s.qlm" % name, data, outcome, expect, cli)

    def patched(data, offset, fmt, value, rehash=True):
        data = bytearray(data)
        struct.pack_into(fmt, data, offset, value)
        return qlm_rehash_header(data) if rehash else bytes(data)

    def edited(fn):
        return qlm_file(tok, cfg, tensors, edit_meta=fn)

    case("good", good, "", outcome="ok")
    meta_off = struct.unpack_from("<Q", good, 48)[0]
    meta_len = struct.unpack_from("<Q", good, 56)[0]
    t0 = struct.unpack_from("<Q", good, 32)[0]
    # truncated at every structural boundary
    for name, cut in [("trunc_empty", 0), ("trunc_in_magic", 4), ("trunc_in_header", 100),
                      ("trunc_after_header", 128), ("trunc_in_tokenizer", 128 + len(tok) // 2),
                      ("trunc_in_tensors", (t0 + meta_off) // 2), ("trunc_at_metadata", meta_off),
                      ("trunc_in_metadata", meta_off + meta_len // 2),
                      ("trunc_in_padding", len(good) - 1)]:
        # (too short for the magic: the CLI does not take it for a .qlm file)
        case(name, good[:cut], "too small" if cut < 128 else "(truncated)",
             cli="any" if cut < 8 else "same")
    case("appended_junk", good + b"\0" * 4096, "bytes, but it has")
    case("bad_magic", b"\x89QLN" + good[4:], "bad magic", cli="any")
    case("future_version", patched(good, 8, "<I", 2), "newer than this qlm supports")
    case("version_zero", patched(good, 8, "<I", 0), "invalid format version 0")
    case("big_endian", patched(good, 12, "<I", 0x0D0C0B0A), "big-endian")
    case("bad_header_checksum", patched(good, 24, "<Q", len(good), rehash=False)[:120] +
         struct.pack("<Q", 0x1234) + good[128:], "header checksum mismatch")
    bad_meta = bytearray(good)
    bad_meta[meta_off + 3] ^= 0x20
    case("bad_metadata_checksum", bytes(bad_meta), "metadata checksum mismatch")
    bad_tok = bytearray(good)
    bad_tok[128 + 5] ^= 1
    case("bad_tokenizer_checksum", bytes(bad_tok), "tokenizer checksum mismatch")
    bad_tensor = bytearray(good)
    bad_tensor[meta_off - 70] ^= 1  # inside the last tensor's blob
    case("bad_tensor_checksum", bytes(bad_tensor), "checksum mismatch", cli="ok")
    case("flags_set", patched(good, 20, "<I", 1), "unknown header flags")
    case("reserved_nonzero", patched(good, 80, "<Q", 1), "reserved header bytes")
    case("header_bytes_wrong", patched(good, 16, "<I", 256), "unexpected header size")
    case("data_offset_unaligned", patched(good, 32, "<Q", 130), "data section")
    case("data_bytes_past_eof", patched(good, 40, "<Q", 2**64 - 64), "data section")
    case("metadata_past_eof", patched(good, 56, "<Q", len(good)), "metadata")
    case("metadata_before_data", patched(good, 48, "<Q", 256), "metadata")
    case("metadata_huge", patched(patched(good, 48, "<Q", meta_off), 56, "<Q", 2**63),
         "metadata")
    case("metadata_not_json", qlm_file(tok, cfg, tensors, meta_text=b"{\"config\": "),
         "not valid JSON")
    case("metadata_array", qlm_file(tok, cfg, tensors, meta_text=b"[]"), "JSON object")
    case("metadata_no_tensors", edited(lambda m: m.pop("tensors")), "missing \"tensors\"")
    case("config_wrong_type", edited(lambda m: m.update(config=5)), "\"config\" must be a string")

    def tensor_edit(i, **kv):
        def fn(m):
            m["tensors"][i].update(kv)
        return fn

    case("tensor_offset_out_of_range", edited(tensor_edit(0, offset=2**40)), "outside the data")
    case("tensor_offset_wraps", edited(tensor_edit(0, offset=2**64 - 64)), "outside the data")
    case("tensor_offset_unaligned", edited(tensor_edit(1, offset=200)), "not 64-byte aligned")

    def overlap(m):
        m["tensors"][1]["offset"] = m["tensors"][0]["offset"]
    case("tensors_overlap", edited(overlap), "overlap")

    def over_tokenizer(m):
        m["tensors"][0]["offset"] = 128
    case("tensor_over_tokenizer", edited(over_tokenizer), "overlap")
    case("tensor_bytes_mismatch", edited(tensor_edit(0, bytes=64)), "takes")
    case("tensor_negative_dim", edited(tensor_edit(0, shape=[-24, 8])), "shape")
    case("tensor_zero_dim", edited(tensor_edit(0, shape=[0, 8])), "shape")
    case("tensor_overflowing_shape", edited(tensor_edit(0, shape=[2**40, 2**40])), "shape")
    case("tensor_three_dims", edited(tensor_edit(0, shape=[2, 12, 8])), "shape")
    case("tensor_bad_format", edited(tensor_edit(0, format="q3_k")), "is not f32")
    case("tensor_bad_group_size", edited(tensor_edit(2, group_size=48)), "group size")
    case("tensor_perm_on_f32", edited(tensor_edit(0, has_perm=True)), "permutation")
    case("tensor_scale_nan_like", edited(tensor_edit(4, tensor_scale=1e300)), "tensor_scale")
    case("tensor_scale_zero", edited(tensor_edit(4, tensor_scale=0.0)), "tensor_scale")
    case("tensor_scale_string", edited(tensor_edit(4, tensor_scale="1")), "tensor_scale")
    case("tensor_checksum_not_hex", edited(tensor_edit(0, xxh64="zz")), "16 hex digits")
    case("tensor_empty_name", edited(tensor_edit(0, name="")), "empty name")

    def dup_name(m):
        m["tensors"][1]["name"] = m["tensors"][0]["name"]
    case("tensor_duplicate_name", edited(dup_name), "appears twice")
    case("tokenizer_out_of_range",
         edited(lambda m: m["tokenizer"].update(offset=2**63, bytes=100)), "tokenizer bytes")

    # q4 permutations (the perm section is inside the checksummed tensor blob,
    # which the reader validates regardless of --verify).
    qi = 5  # q_proj: [8, 8] q4 with perm; section offsets from blob_layout
    layout, _, _, _ = blob_layout("q4", 8, 8, 32, True)
    for name, perm, expect in [("perm_duplicate", [0, 0, 1, 2, 3, 4, 5, 6], "twice"),
                               ("perm_out_of_range", [0, 1, 2, 3, 4, 5, 6, 8], "outside 0..7"),
                               ("perm_negative", [-1, 1, 2, 3, 4, 5, 6, 7], "outside 0..7")]:
        t = list(tensors)
        n, fmt, shape, group, _, scale, blob = t[qi]
        assert n.endswith("q_proj.weight")
        blob = bytearray(blob)
        off, size = layout["perm"]
        blob[off:off + size] = struct.pack("<8i", *perm)
        t[qi] = (n, fmt, shape, group, perm, scale, bytes(blob))
        case(name, qlm_file(tok, cfg, t), expect)


def gptq_cases(c, tok):
    def case(name, expect, config=None, edit=None, outcome="error", extra=None, cli="same"):
        files = {"config.json": config_bytes(config or gptq_config()),
                 "model.safetensors": safetensors_bytes(gptq_tensors(random.Random(5), edit)),
                 "tokenizer.model": tok}
        files.update(extra or {})
        c.dir_case("gptq", name, files, outcome, expect, cli)

    D = "model.layers.0.mlp.down_proj"
    Qp = "model.layers.0.self_attn.q_proj"

    def on(target, fn):
        def edit(name, arrays, dtypes, shapes):
            if name == target:
                fn(arrays, dtypes, shapes)
        return edit

    case("good", "", outcome="ok")
    case("nan_scale", "is not finite", edit=on(Qp, lambda a, d, s: a["scales"].__setitem__(
        5, F16_NAN)))
    case("inf_scale", "is not finite", edit=on(D, lambda a, d, s: a["scales"].__setitem__(
        40, F16_INF)))
    case("g_idx_out_of_range", "is outside 0..1", edit=on(D, lambda a, d, s: a["g_idx"]
                                                          .__setitem__(3, 2)))
    case("g_idx_negative", "is outside 0..1", edit=on(D, lambda a, d, s: a["g_idx"]
                                                      .__setitem__(3, -1)))

    def unbalance(a, d, s):
        i = a["g_idx"].index(0)
        a["g_idx"][i] = 1  # group 0 now holds 31 inputs, group 1 holds 33
    case("g_idx_unbalanced_groups", "has 31 inputs, expected 32", edit=on(D, unbalance))
    case("qweight_wrong_shape", "qweight has shape", edit=on(Qp, lambda a, d, s: s.update(
        qweight=[8, 16])), cli="any")
    case("qweight_wrong_dtype", "dtype F32, expected I32", edit=on(Qp, lambda a, d, s: d.update(
        qweight="F32")))
    case("scales_wrong_dtype", "dtype F32, expected F16", edit=on(Qp, lambda a, d, s: (
        d.update(scales="F32"), a.update(scales=[0.01] * len(a["scales"])))))
    case("qzeros_wrong_shape", "qzeros has shape", edit=on(D, lambda a, d, s: s.update(
        qzeros=[1, 4]) or a.update(qzeros=a["qzeros"][:4])))
    case("missing_qzeros", "missing GPTQ tensor model.layers.0.self_attn.q_proj.qzeros",
         edit=on(Qp, lambda a, d, s: a.pop("qzeros")))

    def zero16(a, d, s):
        # v1 stored zero 15 (z = 16) for output 0 of group 0, and a code 0 in that group.
        a["qzeros"][0] = (a["qzeros"][0] & ~0xF) | 0xF
        a["qweight"][0] = a["qweight"][0] & ~0xF
        a["g_idx"] = [k // G_GROUP for k in range(len(a["g_idx"]))]  # code 0 is input 0
    case("zero_point_16_with_code_0", "zero point 16", edit=on(Qp, zero16))
    case("bits_8", "\"bits\" is 8", config=gptq_config(bits=8))
    case("group_size_minus_1", "one group per row", config=gptq_config(group_size=-1))
    case("group_size_string", "\"group_size\" must be an integer",
         config=gptq_config(group_size="128"))
    case("checkpoint_format_unknown", "checkpoint_format",
         config=gptq_config(checkpoint_format="marlin"))
    case("quant_method_awq", "quantization method \"awq\"", config=gptq_config(quant_method="awq"))
    case("quantization_config_array", "must be a JSON object",
         config=gptq_config() | {"quantization_config": [4]})
    case("quantize_config_json_bad", "not valid JSON",
         config=tiny_config(hidden_size=G_HIDDEN, intermediate_size=G_FF,
                            tie_word_embeddings=True),
         extra={"quantize_config.json": b"{\"bits\": 4,"})


def make_corpus(out):
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    c = Corpus(out)
    tok, cfg, _ = hf_cases(c, random.Random(2))
    tok_cases(c, tok)
    qlm_cases(c, tok, cfg)
    gptq_cases(c, tok)
    c.finish(MANIFEST_HEADER)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(README)
    return c


README = """\
# tests/data/bad — malformed model files

Generated by `scripts/make-bad-corpus.py` (rerun it to regenerate; do not edit
these files by hand). `MANIFEST` lists every case: its kind, its path, whether
it is a valid control (`ok`) or must be rejected (`error`), and a phrase the
error message must contain. tests/robustness/ runs each case through the
`qlm` CLI and/or the loader it targets and requires a clean failure: exit
code 1 or 2, exactly one `error: ...` line on stderr naming the problem, no
signal, no hang, bounded memory. docs/robustness.md describes the coverage.
"""

# ---------------------------------------------------------------- from ../shared (test time)


def shared_cases(shared, out):
    """tiny-llama's real safetensors cut at every structural boundary and its header
    corrupted in place (same size): MBs, so generated at test time, never committed."""
    src = os.path.join(shared, "fixtures", "tiny-llama")
    for f in ["config.json", "model.safetensors", "tokenizer.model"]:
        if not os.path.isfile(os.path.join(src, f)):
            sys.exit("missing test data: %s" % os.path.join(src, f))
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    with open(os.path.join(src, "model.safetensors"), "rb") as f:
        st = f.read()
    hlen, header, data_off = safetensors_layout(st)
    bounds = sorted({v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"})
    cuts = [("len", 4), ("header_start", 8), ("header_mid", 8 + hlen // 2),
            ("header_end", data_off)]
    cuts += [("tensor_end_%03d" % i, data_off + b) for i, b in enumerate(bounds[:-1])]
    cuts += [("last_byte", len(st) - 1)]
    c = Corpus(out)
    for name, cut in cuts:
        d = os.path.join("hf", "trunc_" + name)
        os.makedirs(os.path.join(out, d))
        for f in ["config.json", "tokenizer.model"]:
            shutil.copy(os.path.join(src, f), os.path.join(out, d, f))
        c.write(os.path.join(d, "model.safetensors"), st[:cut])
        c.manifest.append(("hf", d, "error", "too short" if cut < 8 else
                           "larger than" if cut < data_off else "run past the data section",
                           "same"))
    # Same-size corruptions of the header: a digit of one offset changed.
    text = st[8:data_off]
    for i, key in enumerate([b"\"data_offsets\":[", b"\"shape\":["]):
        pos = text.find(key)
        if pos < 0:
            continue
        pos += len(key)
        corrupt = bytearray(st)
        digit = corrupt[8 + pos]
        corrupt[8 + pos] = ord("9") if digit != ord("9") else ord("8")
        d = os.path.join("hf", "corrupt_header_%d" % i)
        os.makedirs(os.path.join(out, d))
        for f in ["config.json", "tokenizer.model"]:
            shutil.copy(os.path.join(src, f), os.path.join(out, d, f))
        c.write(os.path.join(d, "model.safetensors"), bytes(corrupt))
        c.manifest.append(("hf", d, "error", "safetensors file", "same"))
    c.finish(MANIFEST_HEADER.replace("scripts/make-bad-corpus.py",
                                     "scripts/make-bad-corpus.py --from-shared"))
    return c


# ---------------------------------------------------------------- fuzz seeds


def make_seeds(out, shared):
    if os.path.isdir(out):
        shutil.rmtree(out)
    corpus_dir = os.path.join(out, ".corpus")
    make_corpus(corpus_dir)

    def seed(target, name, data):
        p = os.path.join(out, target, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)

    def read(p):
        with open(p, "rb") as f:
            return f.read()

    small = 64 * 1024
    for root, _, files in os.walk(corpus_dir):
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, corpus_dir).replace(os.sep, "_")
            data = read(p)
            if len(data) > small:
                continue
            if f.endswith(".safetensors"):
                seed("safetensors", rel, data)
            elif f.endswith(".json"):
                seed("model_config", rel, data)
            elif f.endswith(".qlm"):
                seed("qlm_file", rel, data)
            elif f.endswith(".model"):
                seed("tokenizer", rel, data)
    # weight_store: [u16 L][index][u32 M][shard 1][shard 2]
    for root, _, files in os.walk(os.path.join(corpus_dir, "hf")):
        files = set(files)
        name = os.path.basename(root)
        if "model.safetensors.index.json" in files:
            idx = read(os.path.join(root, "model.safetensors.index.json"))
            a = os.path.join(root, "model-00001-of-00002.safetensors")
            b = os.path.join(root, "model-00002-of-00002.safetensors")
            a = read(a) if os.path.exists(a) else b""
            b = read(b) if os.path.exists(b) else b""
            seed("weight_store", name, struct.pack("<H", len(idx)) + idx +
                 struct.pack("<I", len(a)) + a + b)
        elif "model.safetensors" in files and name in ("good", "st_overlapping_offsets",
                                                        "missing_tensor"):
            st = read(os.path.join(root, "model.safetensors"))
            seed("weight_store", name, struct.pack("<HI", 0, len(st)) + st)
    # gptq: [flags][group][K/8-1][N/8-1] + payload with finite f16 scales
    rng = random.Random(11)
    for flags in [0, 1, 2, 3, 6, 7, 8, 16, 22]:
        for gsel, k8, n8 in [(0, 3, 1), (1, 15, 3), (2, 31, 0), (0, 7, 7)]:
            g = [32, 64, 128][gsel]
            k, n = 8 * (k8 + 1), 8 * (n8 + 1)
            groups = (k + g - 1) // g
            payload = bytes(rng.randrange(256) for _ in range(k // 8 * n * 4 + groups * n // 2))
            payload += struct.pack("<%dH" % (groups * n),
                                   *[f16_bits(rng.uniform(-0.1, 0.1)) for _ in range(groups * n)])
            head = bytes([flags, gsel, k8, n8])
            if flags & 4:
                payload += bytes(rng.randrange(256) for _ in range(2 * k))
            else:
                payload += struct.pack("<%di" % k, *[i // g for i in range(k)])
            seed("gptq", "f%d_g%d_k%d_n%d" % (flags, g, k, n), head + payload)
    # prompt_cache: [kv type byte] + a valid cache file of fuzz/prompt_cache_fuzz.cc's
    # tiny shape (2 layers: sliding of 4 slots, full of 8; 2 kv heads; head_dim 4),
    # holding n tokens 0..n-1 (the target rewrites the header itself).
    elem = {0: 4, 1: 2, 2: 1, 3: 1}
    for kv in range(4):
        for n in (1, 3, 6, 8):
            f = b"QLMKVC\0\0" + struct.pack("<IQIIIIQQ", 1, 0x51A4C0DE, kv, 2, 2, 4, 8, n)
            f += struct.pack("<%di" % n, *range(n))
            for cap, ring in ((4, True), (8, False)):
                used = min(n, cap)
                pos = [-1] * used
                for t in range(n):
                    slot = t % cap if ring else t
                    if slot < used:
                        pos[slot] = t
                f += struct.pack("<Q", used) + struct.pack("<%di" % used, *pos)
                for _ in range(2):  # kv heads
                    f += bytes(rng.randrange(256) for _ in range(2 * used * 4 * elem[kv]))
                    if kv >= 2:
                        f += struct.pack("<%df" % (2 * used), *[0.01] * (2 * used))
            seed("prompt_cache", "kv%d_n%d" % (kv, n), bytes([kv]) + f)
    # cli: NUL-separated argument lists
    for i, args in enumerate([
            ["run", "-p", "hello", "-n", "5"],
            ["run", "-p", "x", "--temp", "0.7", "--top-k", "40", "--top-p", "0.9", "--min-p",
             "0.05", "--repeat-penalty", "1.1", "--repeat-last-n", "64", "-s", "42", "-t", "2",
             "-c", "128", "-b", "16", "--kernels", "scalar"],
            ["run", "-f", "prompt.txt", "-n", "-1"],
            ["run", "-p", "x", "--temp", "-1"],
            ["run", "-p", "x", "--top-p", "nan"],
            ["run", "-p", "x", "-c", "18446744073709551615"],
            ["logits", "--ids", "2,651,8", "-o", "out.f32"],
            ["logits", "--ids", " 2 , 3 ", "-o", "x", "-t", "4"],
            ["logits", "--ids", "2,,3", "-o", "x"],
            ["logits", "--ids", "99999999999", "-o", "x", "-m", "model"],
            ["run", "--help"]]):
        seed("cli", "args_%02d" % i, "\0".join(args).encode())
    # From ../shared: configs verbatim, tokenizers and safetensors shrunk.
    if shared and os.path.isdir(shared):
        for root, _, files in os.walk(shared):
            for f in sorted(files):
                p = os.path.join(root, f)
                rel = os.path.relpath(p, shared).replace(os.sep, "_")
                if f in ("config.json", "generation_config.json", "quantize_config.json"):
                    seed("model_config", "shared_" + rel, read(p))
                elif f.endswith(".model"):
                    seed("tokenizer", "shared_" + rel + "_300",
                         shrink_tokenizer(read(p), 300))
                    seed("tokenizer", "shared_" + rel + "_40", shrink_tokenizer(read(p), 40))
                elif f == "model.safetensors":
                    st = read(p)
                    _, header, data_off = safetensors_layout(st)
                    entries = sorted(((v["data_offsets"][1] - v["data_offsets"][0], k, v)
                                      for k, v in header.items() if k != "__metadata__"))
                    picked = [Tensor(k, v["dtype"], v["shape"],
                                     st[data_off + v["data_offsets"][0]:
                                        data_off + v["data_offsets"][1]])
                              for _, k, v in entries[:6]]
                    seed("safetensors", "shared_" + rel, safetensors_bytes(
                        picked, metadata=header.get("__metadata__", {})))
    shutil.rmtree(corpus_dir)


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="output folder (default: tests/data/bad, or with --seeds: "
                    "required)")
    ap.add_argument("--from-shared", metavar="SHARED",
                    help="make the fixture-derived cases from this ../shared folder")
    ap.add_argument("--seeds", metavar="DIR", help="write fuzz seed corpora to DIR")
    ap.add_argument("--shared", metavar="SHARED", help="with --seeds: also seed from ../shared")
    a = ap.parse_args()
    if a.seeds:
        make_seeds(a.seeds, a.shared)
        print("make-bad-corpus: seeds in %s" % a.seeds)
    elif a.from_shared:
        if not a.out:
            ap.error("--from-shared needs --out")
        c = shared_cases(a.from_shared, a.out)
        print("make-bad-corpus: %d cases in %s" % (len(c.manifest), a.out))
    else:
        out = a.out or os.path.join(repo, "tests", "data", "bad")
        c = make_corpus(out)
        print("make-bad-corpus: %d cases in %s" % (len(c.manifest), out))


if __name__ == "__main__":
    main()
