// What the CPU STDP kernels share: the nonzero entries of a dense map packed branch-free, and
// one step of a trace.
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <cstdint>

namespace plasticity_plugins_cpu_detail {

// The nonzero entries of a [rows, cols] map as (row * stride + col + shift, value), in order;
// offset and value need eight entries of slack beyond the count returned.
template <typename scalar_t>
inline int64_t nonzeros(const scalar_t* map, int64_t rows, int64_t cols, int32_t stride,
                        int32_t shift, int32_t* offset, scalar_t* value) {
  int64_t count = 0;
  for (int64_t y = 0; y < rows; ++y) {
    const scalar_t* row = map + y * cols;
    const auto start = static_cast<int32_t>(y * stride + shift);
    for (int64_t x = 0; x < cols; ++x) {
      // branch-free: every entry is written, the count advances past the nonzero ones
      offset[count] = start + static_cast<int32_t>(x);
      value[count] = row[x];
      count += row[x] != scalar_t(0);
    }
  }
  return count;
}

#if defined(__AVX2__)
// For each 8-bit mask, the lanes of its set bits in order (then the rest): a left-pack table.
struct LeftPack {
  alignas(32) int32_t lanes[256][8];
  LeftPack() {
    for (int mask = 0; mask < 256; ++mask) {
      int n = 0;
      for (int l = 0; l < 8; ++l)
        if (mask & (1 << l)) lanes[mask][n++] = l;
      for (int l = 0; l < 8; ++l)
        if (!(mask & (1 << l))) lanes[mask][n++] = l;
    }
  }
};

template <>
inline int64_t nonzeros<float>(const float* map, int64_t rows, int64_t cols, int32_t stride,
                               int32_t shift, int32_t* offset, float* value) {
  static const LeftPack pack;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t count = 0;
  for (int64_t y = 0; y < rows; ++y) {
    const float* row = map + y * cols;
    const auto start = static_cast<int32_t>(y * stride + shift);
    int64_t x = 0;
    for (; x + 8 <= cols; x += 8) {
      const __m256 v = _mm256_loadu_ps(row + x);
      const int mask =
          _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
      const __m256i order =
          _mm256_load_si256(reinterpret_cast<const __m256i*>(pack.lanes[mask]));
      const __m256i at =
          _mm256_add_epi32(lane, _mm256_set1_epi32(start + static_cast<int32_t>(x)));
      _mm256_storeu_ps(value + count, _mm256_permutevar8x32_ps(v, order));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(offset + count),
                          _mm256_permutevar8x32_epi32(at, order));
      count += __builtin_popcount(static_cast<unsigned>(mask));
    }
    for (; x < cols; ++x) {
      offset[count] = start + static_cast<int32_t>(x);
      value[count] = row[x];
      count += row[x] != 0.0f;
    }
  }
  return count;
}
#endif

// out = decay * trace + spikes (all-to-all), or spikes where nonzero, else decay * trace
// (nearest), over n entries.
template <typename scalar_t>
inline void trace_step(const scalar_t* trace, const scalar_t* spikes, int64_t n, scalar_t decay,
                       bool nearest, scalar_t* out) {
  if (nearest) {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k)
      out[k] = spikes[k] != scalar_t(0) ? spikes[k] : decay * trace[k];
  } else {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) out[k] = decay * trace[k] + spikes[k];
  }
}

}  // namespace plasticity_plugins_cpu_detail
