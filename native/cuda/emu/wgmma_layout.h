// The shared-memory matrix descriptor of wgmma (sm_90a) and the one operand layout the kernels
// use: K-major without swizzle, in core matrices of 8 rows x 16 bytes (8 x 4 tf32) stored as 128
// contiguous bytes. Element (row, k) lies at start + (row / 8) SBO + (row % 8) 16 + (k / 4) LBO +
// (k % 4) 4 bytes (PTX ISA, "matrix descriptor"; CUTLASS's canonical K-major INTERLEAVE layout
// ((8, m), 2) : ((1, SBO), LBO) in 16-byte units). Plain C++ (host and device): the kernel
// encodes descriptors with it, the emulator decodes them.
#pragma once
#include <cstdint>

namespace c3emu {

struct SmemDesc {
  uint32_t start, lbo, sbo;  // bytes
  int base_offset, swizzle;  // bits 49-51; bits 62-63 (0: none, 1: 128B, 2: 64B, 3: 32B)
};

// bits 0-13: start >> 4, 16-29: LBO >> 4, 32-45: SBO >> 4, 62-63: swizzle (0)
inline constexpr uint64_t encode_desc(uint32_t start, uint32_t lbo, uint32_t sbo) {
  return uint64_t((start & 0x3FFFFu) >> 4) | (uint64_t((lbo >> 4) & 0x3FFFu) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFFu) << 32);
}

inline SmemDesc decode_desc(uint64_t d) {
  return SmemDesc{static_cast<uint32_t>(d & 0x3FFFu) << 4, static_cast<uint32_t>((d >> 16) & 0x3FFFu) << 4,
                  static_cast<uint32_t>((d >> 32) & 0x3FFFu) << 4, static_cast<int>((d >> 49) & 7u),
                  static_cast<int>(d >> 62)};
}

// byte address of element (row, k) of a K-major, non-swizzled operand
inline uint32_t kmajor_at(const SmemDesc& d, int row, int k) {
  return d.start + static_cast<uint32_t>(row / 8) * d.sbo + static_cast<uint32_t>(row % 8) * 16 +
         static_cast<uint32_t>(k / 4) * d.lbo + static_cast<uint32_t>(k % 4) * 4;
}

// The accumulator of wgmma m64nNk8 (f32): value v of lane l of warp w (of the warpgroup) is row
// 16 w + l / 4 + 8 ((v >> 1) & 1), column 8 (v >> 2) + 2 (l % 4) + (v & 1), as mma.sync's m16n8
// fragment repeated along N (CUTLASS CLayout_64xN).
inline int wgmma_row(int warp, int lane, int v) { return 16 * warp + lane / 4 + 8 * ((v >> 1) & 1); }
inline int wgmma_col(int lane, int v) { return 8 * (v >> 2) + 2 * (lane % 4) + (v & 1); }

}  // namespace c3emu
