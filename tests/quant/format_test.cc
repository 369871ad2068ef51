#include "quant/format.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"

namespace qlm {
namespace {

TEST(Format, NamesRoundTrip) {
  for (int i = 0; i < kNumFormats; ++i) {
    const auto f = static_cast<Format>(i);
    const auto parsed = ParseFormat(FormatName(f));
    ASSERT_TRUE(parsed.has_value()) << FormatName(f);
    EXPECT_EQ(*parsed, f);
  }
  EXPECT_EQ(std::string(FormatName(Format::kSFP8)), "sfp8");
  EXPECT_FALSE(ParseFormat("Q4").has_value());
  EXPECT_FALSE(ParseFormat("q8").has_value());
  EXPECT_FALSE(ParseFormat("").has_value());
}

TEST(TensorDesc, HandComputedLayouts) {
  // int8 [3, 33]: rows padded to 64 inputs = 64 bytes, 2 groups of 32.
  TensorDesc d = MakeTensorDesc(Format::kInt8, 3, 33);
  EXPECT_EQ(d.group_size, 32u);
  EXPECT_EQ(d.padded_cols, 64u);
  EXPECT_EQ(d.groups_per_row, 2u);
  EXPECT_EQ(d.row_bytes, 64u);
  EXPECT_EQ(d.data_offset, 0u);
  EXPECT_EQ(d.data_bytes, 192u);
  EXPECT_EQ(d.scales_offset, 192u);
  EXPECT_EQ(d.scales_bytes, 12u);
  EXPECT_EQ(d.zeros_bytes, 0u);
  EXPECT_EQ(d.perm_bytes, 0u);
  EXPECT_EQ(d.total_bytes, 256u);

  // q4 [3, 100], group 128, act-order: rows padded to 128 inputs = 64 bytes.
  d = MakeTensorDesc(Format::kQ4, 3, 100, 128, true);
  EXPECT_EQ(d.padded_cols, 128u);
  EXPECT_EQ(d.row_bytes, 64u);
  EXPECT_EQ(d.groups_per_row, 1u);
  EXPECT_EQ(d.data_bytes, 192u);
  EXPECT_EQ(d.scales_offset, 192u);
  EXPECT_EQ(d.scales_bytes, 6u);
  EXPECT_EQ(d.zeros_offset, 256u);
  EXPECT_EQ(d.zeros_bytes, 3u);
  EXPECT_EQ(d.perm_offset, 320u);
  EXPECT_EQ(d.perm_bytes, 400u);
  EXPECT_EQ(d.total_bytes, 768u);

  // q4 [2, 130], group 128: 192 padded inputs, the second group half padding.
  d = MakeTensorDesc(Format::kQ4, 2, 130, 128);
  EXPECT_EQ(d.padded_cols, 192u);
  EXPECT_EQ(d.row_bytes, 96u);
  EXPECT_EQ(d.groups_per_row, 2u);
  EXPECT_FALSE(d.has_perm);

  // q4 default group is 128.
  EXPECT_EQ(MakeTensorDesc(Format::kQ4, 1, 64).group_size, kQ4DefaultGroupSize);

  // Unpadded formats.
  d = MakeTensorDesc(Format::kSFP8, 5, 7);
  EXPECT_EQ(d.row_bytes, 7u);
  EXPECT_EQ(d.padded_cols, 7u);
  EXPECT_EQ(d.group_size, 0u);
  EXPECT_EQ(d.total_bytes, 64u);
  EXPECT_EQ(MakeTensorDesc(Format::kBF16, 5, 7).row_bytes, 14u);
  EXPECT_EQ(MakeTensorDesc(Format::kF32, 5, 7).row_bytes, 28u);
  EXPECT_EQ(MakeTensorDesc(Format::kF32, 5, 7).data_bytes, 140u);
}

TEST(TensorDesc, SectionsAreAlignedOrderedAndDisjointForManyShapes) {
  const std::vector<uint64_t> sizes = {1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 2304};
  int checked = 0;
  for (int fi = 0; fi < kNumFormats; ++fi) {
    const auto f = static_cast<Format>(fi);
    for (uint32_t group : {0u, 32u, 64u, 128u}) {
      if (f != Format::kQ4 && group != 0) continue;
      for (bool perm : {false, true}) {
        if (perm && f != Format::kQ4) continue;
        for (uint64_t rows : sizes) {
          for (uint64_t cols : sizes) {
            const TensorDesc d = MakeTensorDesc(f, rows, cols, group, perm);
            const std::string ctx = std::string(FormatName(f)) + " g" + std::to_string(group) +
                                    " [" + std::to_string(rows) + "," + std::to_string(cols) + "]";
            EXPECT_EQ(d.data_offset, 0u) << ctx;
            EXPECT_EQ(d.data_bytes, rows * d.row_bytes) << ctx;
            EXPECT_EQ(d.total_bytes % 64, 0u) << ctx;
            EXPECT_GE(d.padded_cols, cols) << ctx;
            uint64_t end = d.data_bytes;
            auto section = [&](uint64_t off, uint64_t bytes, uint64_t expected) {
              EXPECT_EQ(bytes, expected) << ctx;
              if (bytes == 0) return;
              EXPECT_EQ(off % 64, 0u) << ctx;
              EXPECT_GE(off, end) << ctx;
              end = off + bytes;
            };
            const uint64_t n_groups = rows * d.groups_per_row;
            const bool scaled = f == Format::kInt8 || f == Format::kQ4;
            section(d.scales_offset, d.scales_bytes, scaled ? n_groups * 2 : 0);
            section(d.zeros_offset, d.zeros_bytes, f == Format::kQ4 ? n_groups : 0);
            section(d.perm_offset, d.perm_bytes, perm ? cols * 4 : 0);
            EXPECT_LE(end, d.total_bytes) << ctx;
            EXPECT_LT(d.total_bytes - end, 64u) << ctx;
            if (f == Format::kInt8) {
              EXPECT_EQ(d.padded_cols % 32, 0u) << ctx;
              EXPECT_EQ(d.row_bytes, d.padded_cols) << ctx;
              EXPECT_EQ(d.groups_per_row, d.padded_cols / 32) << ctx;
            }
            if (f == Format::kQ4) {
              EXPECT_EQ(d.padded_cols % 64, 0u) << ctx;
              EXPECT_LT(d.padded_cols - cols, 64u) << ctx;
              EXPECT_EQ(d.row_bytes, d.padded_cols / 2) << ctx;
              EXPECT_EQ(d.row_bytes % 32, 0u) << ctx;
              EXPECT_EQ(d.groups_per_row, (d.padded_cols + d.group_size - 1) / d.group_size) << ctx;
            }
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 169 * (4 + 4 * 2));  // f32, bf16, int8, sfp8; q4: 4 groups × perm
}

TEST(TensorDesc, InvalidCombinationsThrow) {
  for (uint32_t g : {1u, 16u, 48u, 96u, 256u, 1024u}) {
    EXPECT_THROW(MakeTensorDesc(Format::kQ4, 4, 128, g), Error) << g;
  }
  EXPECT_THROW(MakeTensorDesc(Format::kQ4, 0, 128), Error);
  EXPECT_THROW(MakeTensorDesc(Format::kF32, 4, 0), Error);
  EXPECT_THROW(MakeTensorDesc(Format::kInt8, 4, 64, 0, true), Error);
  EXPECT_THROW(MakeTensorDesc(Format::kSFP8, 4, 64, 0, true), Error);
  EXPECT_THROW(MakeTensorDesc(Format::kF32, uint64_t{1} << 41, 4), Error);
  // Within the per-dimension limit but a byte size that overflows 64 bits.
  EXPECT_THROW(MakeTensorDesc(Format::kF32, uint64_t{1} << 40, uint64_t{1} << 40), Error);
  try {
    MakeTensorDesc(Format::kQ4, 4, 128, 16);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("16"), std::string::npos) << e.what();
  }
}

TEST(TensorDesc, ViewPointsIntoTheBlob) {
  const TensorDesc d = MakeTensorDesc(Format::kQ4, 3, 100, 32, true);
  AlignedBuffer blob(d.total_bytes);
  const QTensor v = ViewTensor(d, blob.data());
  EXPECT_EQ(v.data, blob.data());
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(v.scales), blob.data() + d.scales_offset);
  EXPECT_EQ(v.zeros, blob.data() + d.zeros_offset);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(v.perm), blob.data() + d.perm_offset);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.scales) % 64, 0u);
  const QTensor f = ViewTensor(MakeTensorDesc(Format::kF32, 2, 2), blob.data());
  EXPECT_EQ(f.scales, nullptr);
  EXPECT_EQ(f.zeros, nullptr);
  EXPECT_EQ(f.perm, nullptr);
}

}  // namespace
}  // namespace qlm
