// Pair STDP on a Linear synapse, CPU: registers plasticity_plugins_cpu::pair_stdp_linear_, which
// takes one step (pre [B, in], post [B, out]) or a sequence of steps (pre [T, B, in], post
// [T, B, out]), returns the traces after the last step (pre_trace', post_trace') and adds into
// acc, at every step:
//
//   pre_trace' = pre_decay * pre_trace + pre      (nearest: pre where pre != 0)
//   acc[i, j] += causal_scale * sum_b post[b, i] * pre_trace'[b, j]
//              + anti_scale * sum_b post_trace[b, i] * pre[b, j]
//   post_trace' = post_decay * post_trace + post  (nearest: post where post != 0)
//
// The steps of a sequence run here, one after the other: a rule hands over a whole call's
// spikes at once, without a Python loop over its steps.
// The two products of the torch path of plasticity_plugins/kernels/stdp.py (two addmm_: its
// fallback and test oracle) in one pass over acc that visits only the nonzero entries of the spike
// factors, post and pre. The nonzero spikes are listed by column (pre: its samples per input j)
// and by row (post: per output i). acc is cut into blocks of kBlockRows rows and at most
// kBlockColumns columns that stay in cache (threads own whole blocks: no reduction). In a block,
// each row's causal sum (its post spikes' pre_trace rows) is built in vector registers and added
// once; the anti-causal sums are built a column at a time (its pre spikes' post_trace slices,
// kBlockRows entries in registers) for a chunk of kChunk columns, then transposed in 8 x 8
// squares and added eight rows at a time along the chunk (whole cache lines of acc at once, also
// when its rows are a power of two apart and share cache sets). A term whose spike factor has
// more than kDenseFraction nonzero entries is one dense product instead (at::addmm_), which is
// faster there.
//
// Loaded as a plain shared library (no pybind11 module), reached through torch.ops.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "stdp_cpu.h"

namespace {

using plasticity_plugins_cpu_detail::nonzeros;
using plasticity_plugins_cpu_detail::trace_step;

constexpr int64_t kLanes = 8;  // the side of a transposed square
// a work item: at most kBlockRows x kBlockColumns entries of acc; a column's anti-causal sums
// over kBlockRows rows fit in eight vector registers
constexpr int64_t kBlockRows = 64;
constexpr int64_t kBlockColumns = 512;
constexpr int64_t kChunk = 64;  // columns per pass over a block's rows (both terms)
// above this fraction of spikes in its spike factor, a term is computed as a dense product
// (measured crossover on an AVX2 CPU: 20-30 %)
constexpr double kDenseFraction = 0.2;
// below this many entries in a step's two spike maps, their lists are built by one thread (waking
// a second one costs more than the scan)
constexpr int64_t kParallelListEntries = 4096;

// A nonzero spike of a row-major [B, n] map: its sample and its value times the term's scale.
template <typename scalar_t>
struct Entry {
  int32_t sample;
  scalar_t value;
};

// The nonzero entries of spikes [B, n] (times scale) listed by position: position p's entries
// are entries[start[p] .. start[p + 1]), in sample order.
template <typename scalar_t>
struct ByPosition {
  std::vector<int64_t> start;
  std::vector<Entry<scalar_t>> entries;

  ByPosition(const scalar_t* spikes, int64_t batch, int64_t n, scalar_t scale) : start(n + 1, 0) {
    // every sample's nonzeros packed one after another, in this thread's scratch buffers (they
    // keep their size from call to call: the most nonzeros seen, plus a sample's worth)
    thread_local std::vector<int32_t> all_offset;
    thread_local std::vector<scalar_t> all_value;
    std::vector<int64_t> sample_end(batch);
    int64_t total = 0;
    for (int64_t b = 0; b < batch; ++b) {
      // room for the whole sample: nonzeros writes up to eight entries past its count
      const auto needed = static_cast<size_t>(total + n + 8);
      if (all_offset.size() < needed) {
        all_offset.resize(std::max(needed, 2 * all_offset.size()));
        all_value.resize(all_offset.size());
      }
      total += nonzeros(spikes + b * n, 1, n, 0, 0, all_offset.data() + total,
                        all_value.data() + total);
      sample_end[b] = total;
    }
    for (int64_t k = 0; k < total; ++k) ++start[all_offset[k] + 1];
    for (int64_t p = 1; p <= n; ++p) start[p] += start[p - 1];
    std::vector<int64_t> cursor(start.begin(), start.end() - 1);
    entries.resize(total);
    int64_t k = 0;
    for (int64_t b = 0; b < batch; ++b)
      for (; k < sample_end[b]; ++k)
        entries[cursor[all_offset[k]]++] = {static_cast<int32_t>(b), scale * all_value[k]};
  }
  const Entry<scalar_t>* begin(int64_t p) const { return entries.data() + start[p]; }
  const Entry<scalar_t>* end(int64_t p) const { return entries.data() + start[p + 1]; }
};

// block[r * kLanes + c] = sums[c * kBlockRows + r] for r, c < kLanes: an 8 x 8 transpose.
template <typename scalar_t>
void transpose_block(const scalar_t* sums, scalar_t* block) {
  for (int64_t r = 0; r < kLanes; ++r)
    for (int64_t c = 0; c < kLanes; ++c) block[r * kLanes + c] = sums[c * kBlockRows + r];
}

#if defined(__AVX2__)
template <>
void transpose_block<float>(const float* sums, float* block) {
  __m256 r[8], t[8];
  for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(sums + k * kBlockRows);
  for (int k = 0; k < 8; k += 2) {
    t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
    t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
  }
  for (int k = 0; k < 8; k += 4) {
    r[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_ps(block + k * 8, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
    _mm256_storeu_ps(block + (k + 4) * 8, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
  }
}
#endif

// sums[r] = sum over the entries of value * rows[sample * stride + r], r < kBlockRows: one
// column's anti-causal sums over a block of rows, held in registers while the entries are read.
template <typename scalar_t>
void column_sums(const Entry<scalar_t>* begin, const Entry<scalar_t>* end, const scalar_t* rows,
                 int64_t stride, scalar_t* sums) {
  scalar_t total[kBlockRows] = {};
  for (auto e = begin; e != end; ++e) {
    const scalar_t* from = rows + e->sample * stride;
    const scalar_t v = e->value;
#pragma omp simd
    for (int64_t r = 0; r < kBlockRows; ++r) total[r] += v * from[r];
  }
  std::copy(total, total + kBlockRows, sums);
}

#if defined(__AVX2__) && defined(__FMA__)
template <>
void column_sums<float>(const Entry<float>* begin, const Entry<float>* end, const float* rows,
                        int64_t stride, float* sums) {
  static_assert(kBlockRows == 64, "eight registers of eight lanes");
  __m256 total[8];
  for (int r = 0; r < 8; ++r) total[r] = _mm256_setzero_ps();
  for (auto e = begin; e != end; ++e) {
    const float* from = rows + e->sample * stride;
    const __m256 v = _mm256_set1_ps(e->value);
    for (int r = 0; r < 8; ++r)
      total[r] = _mm256_fmadd_ps(v, _mm256_loadu_ps(from + 8 * r), total[r]);
  }
  for (int r = 0; r < 8; ++r) _mm256_storeu_ps(sums + 8 * r, total[r]);
}
#endif

// row[j] += sum over the entries of value * pre_trace[sample * in + j], first <= j < last: one
// acc row's causal sum, written once.
template <typename scalar_t>
void add_row_sums(const Entry<scalar_t>* begin, const Entry<scalar_t>* end,
                  const scalar_t* pre_trace, int64_t in, int64_t first, int64_t last,
                  scalar_t* row) {
  for (auto e = begin; e != end; ++e) {
    const scalar_t* from = pre_trace + e->sample * in;
    const scalar_t v = e->value;
#pragma omp simd
    for (int64_t j = first; j < last; ++j) row[j] += v * from[j];
  }
}

#if defined(__AVX2__) && defined(__FMA__)
// The same, the sums of kWide columns held in registers while the entries are read.
template <int kWide>
int64_t add_row_sums_avx2(const Entry<float>* begin, const Entry<float>* end,
                          const float* pre_trace, int64_t in, int64_t first, int64_t last,
                          float* row) {
  constexpr int kVectors = kWide / 8;
  int64_t j = first;
  for (; j + kWide <= last; j += kWide) {
    __m256 total[kVectors];
    for (int k = 0; k < kVectors; ++k) total[k] = _mm256_setzero_ps();
    for (auto e = begin; e != end; ++e) {
      const float* from = pre_trace + e->sample * in + j;
      const __m256 v = _mm256_set1_ps(e->value);
      for (int k = 0; k < kVectors; ++k)
        total[k] = _mm256_fmadd_ps(v, _mm256_loadu_ps(from + 8 * k), total[k]);
    }
    for (int k = 0; k < kVectors; ++k)
      _mm256_storeu_ps(row + j + 8 * k, _mm256_add_ps(_mm256_loadu_ps(row + j + 8 * k), total[k]));
  }
  return j;
}

template <>
void add_row_sums<float>(const Entry<float>* begin, const Entry<float>* end,
                         const float* pre_trace, int64_t in, int64_t first, int64_t last,
                         float* row) {
  if (begin == end) return;
  first = add_row_sums_avx2<64>(begin, end, pre_trace, in, first, last, row);
  first = add_row_sums_avx2<8>(begin, end, pre_trace, in, first, last, row);
  for (auto e = begin; e != end; ++e)  // the last columns, fewer than eight
    for (int64_t j = first; j < last; ++j) row[j] += e->value * pre_trace[e->sample * in + j];
}
#endif

// The row-major [B, n] map post_trace in blocks of kBlockRows entries per sample: the block from
// entry first of sample b starts at rows(first) + b * stride(first). Whole blocks are read from
// the map itself; a last, partial block from a zero-padded copy of it ([B, kBlockRows]), so that
// reading kBlockRows entries never runs past the map.
template <typename scalar_t>
struct BlockRows {
  const scalar_t* map;
  int64_t n;
  int64_t whole;  // entries in whole blocks
  std::vector<scalar_t> tail;

  BlockRows(const scalar_t* map, int64_t batch, int64_t n)
      : map(map), n(n), whole(n / kBlockRows * kBlockRows) {
    if (whole == n || batch == 0) return;
    tail.assign(batch * kBlockRows, scalar_t(0));
    for (int64_t b = 0; b < batch; ++b)
      std::copy(map + b * n + whole, map + (b + 1) * n, tail.data() + b * kBlockRows);
  }
  const scalar_t* rows(int64_t first) const { return first < whole ? map + first : tail.data(); }
  int64_t stride(int64_t first) const { return first < whole ? n : kBlockRows; }
};

// Whether a term whose spike factor (a [B, n] map) has `count` nonzero entries is a dense product.
bool dense_term(size_t count, int64_t batch, int64_t n) {
  return static_cast<double>(count) / static_cast<double>(batch * n) > kDenseFraction;
}

// Adds the terms whose spikes are sparse; returns which terms are dense (causal, anti-causal):
// the caller adds those as products.
template <typename scalar_t>
std::pair<bool, bool> run(scalar_t* acc, const scalar_t* pre, const scalar_t* pre_trace,
                          const scalar_t* post, const scalar_t* post_trace, int64_t batch,
                          int64_t in, int64_t out, scalar_t causal_scale, scalar_t anti_scale) {
  bool causal = causal_scale != scalar_t(0), anti = anti_scale != scalar_t(0);
  // the two spike lists are built side by side (each a serial scan of its map) when they are
  // long enough to repay a second thread; their lengths also decide which terms are dense
  std::optional<ByPosition<scalar_t>> pre_list, post_list;
  const int64_t list_grain = batch * (in + out) >= kParallelListEntries ? 1 : 2;
  at::parallel_for(0, 2, list_grain, [&](int64_t begin, int64_t end) {
    for (int64_t list = begin; list < end; ++list) {
      if (list == 0)
        pre_list.emplace(pre, anti ? batch : 0, in, anti_scale);
      else
        post_list.emplace(post, causal ? batch : 0, out, causal_scale);
    }
  });
  const ByPosition<scalar_t>& pre_by_column = *pre_list;
  const ByPosition<scalar_t>& post_by_row = *post_list;
  const bool dense_causal = causal && dense_term(post_by_row.entries.size(), batch, out);
  const bool dense_anti = anti && dense_term(pre_by_column.entries.size(), batch, in);
  causal = causal && !dense_causal;
  anti = anti && !dense_anti;
  const BlockRows<scalar_t> post_trace_rows(post_trace, anti ? batch : 0, out);
  const int64_t row_blocks = (out + kBlockRows - 1) / kBlockRows;
  // column blocks of near-equal width (a multiple of kLanes), at most kBlockColumns
  const int64_t column_blocks = (in + kBlockColumns - 1) / kBlockColumns;
  const int64_t block_columns =
      ((in + column_blocks - 1) / column_blocks + kLanes - 1) / kLanes * kLanes;
  const bool any_anti = anti && !pre_by_column.entries.empty();

  // work item: a block of kBlockRows x kBlockColumns entries of acc (it stays in cache)
  const int64_t items = row_blocks * column_blocks;
  std::atomic<int64_t> next_item{0};  // items are taken in turn: blocks differ in their spikes
  at::parallel_for(0, std::min<int64_t>(items, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    alignas(64) scalar_t block[kLanes * kLanes];
    alignas(64) scalar_t sums[kChunk * kBlockRows];  // a chunk's anti-causal sums, [column][row]
    bool group_used[kChunk / kLanes];
    for (int64_t item = next_item++; item < items; item = next_item++) {
      const int64_t k = item / column_blocks;
      const int64_t first_row = k * kBlockRows, rows = std::min(kBlockRows, out - first_row);
      const int64_t first_column = (item % column_blocks) * block_columns;
      const int64_t last_column = std::min(in, first_column + block_columns);
      scalar_t* target = acc + first_row * in;
      // column chunks outside, rows inside: a chunk of every sample's pre trace stays in L1
      for (int64_t chunk = first_column; causal && chunk < last_column; chunk += kChunk) {
        const int64_t chunk_end = std::min(chunk + kChunk, last_column);
        for (int64_t r = 0; r < rows; ++r)
          add_row_sums(post_by_row.begin(first_row + r), post_by_row.end(first_row + r),
                       pre_trace, in, chunk, chunk_end, target + r * in);
      }
      // anti-causal: a chunk of kChunk columns at a time, its sums first (they stay in L1), then
      // added eight rows at a time along the chunk: a row's chunk is whole cache lines, used at
      // once (acc rows a power of two apart share cache sets: adding eight columns to every row
      // of the block before moving on would evict each line before its other half is added)
      for (int64_t chunk = first_column; any_anti && chunk < last_column; chunk += kChunk) {
        const int64_t chunk_end = std::min(chunk + kChunk, last_column);
        const int64_t groups = (chunk_end - chunk + kLanes - 1) / kLanes;
        for (int64_t g = 0; g < groups; ++g) {
          group_used[g] = false;
          for (int64_t c = g * kLanes; c < (g + 1) * kLanes; ++c) {
            scalar_t* column_sum = sums + c * kBlockRows;
            const int64_t column = chunk + c;
            if (column < last_column && pre_by_column.begin(column) != pre_by_column.end(column)) {
              column_sums(pre_by_column.begin(column), pre_by_column.end(column),
                          post_trace_rows.rows(first_row), post_trace_rows.stride(first_row),
                          column_sum);
              group_used[g] = true;
            } else {
              std::fill(column_sum, column_sum + kBlockRows, scalar_t(0));
            }
          }
        }
        for (int64_t row = 0; row < rows; row += kLanes) {
          const int64_t block_rows = std::min(kLanes, rows - row);
          for (int64_t g = 0; g < groups; ++g) {
            if (!group_used[g]) continue;
            const int64_t column = chunk + g * kLanes;
            const int64_t columns = std::min(kLanes, last_column - column);
            transpose_block(sums + g * kLanes * kBlockRows + row, block);
            scalar_t* into = target + row * in + column;
            if (block_rows == kLanes && columns == kLanes) {
              for (int64_t r = 0; r < kLanes; ++r) {
#pragma omp simd
                for (int64_t c = 0; c < kLanes; ++c) into[r * in + c] += block[r * kLanes + c];
              }
            } else {
              for (int64_t r = 0; r < block_rows; ++r)
                for (int64_t c = 0; c < columns; ++c) into[r * in + c] += block[r * kLanes + c];
            }
          }
        }
      }
    }
  });
  return {dense_causal, dense_anti};
}

std::tuple<at::Tensor, at::Tensor> pair_stdp_linear_cpu(
    const at::Tensor& acc, const at::Tensor& pre, const at::Tensor& pre_trace,
    const at::Tensor& post, const at::Tensor& post_trace, double pre_decay, double post_decay,
    bool nearest, double causal_scale, double anti_scale) {
  constexpr const char* name = "pair_stdp_linear_";
  TORCH_CHECK((pre.dim() == 2 || pre.dim() == 3) && post.dim() == pre.dim(), name,
              ": pre and post must be [B, n] (one step) or [T, B, n] (a sequence), got ",
              pre.sizes(), " and ", post.sizes());
  const bool sequence = pre.dim() == 3;
  const int64_t steps = sequence ? pre.size(0) : 1;
  TORCH_CHECK(!sequence || post.size(0) == steps, name, ": pre has ", steps,
              " steps but post has ", post.size(0));
  const at::IntArrayRef pre_step = pre.sizes().slice(sequence ? 1 : 0);
  const at::IntArrayRef post_step = post.sizes().slice(sequence ? 1 : 0);
  TORCH_CHECK(pre_trace.sizes() == pre_step && post_trace.sizes() == post_step, name,
              ": each trace must have the shape of one step of its spikes");
  const int64_t batch = pre_step[0], in = pre_step[1], out = post_step[1];
  TORCH_CHECK(post_step[0] == batch, name, ": batch sizes differ");
  TORCH_CHECK(acc.dim() == 2 && acc.size(0) == out && acc.size(1) == in, name,
              ": acc must be [out, in] = [", out, ", ", in, "], got ", acc.sizes());
  TORCH_CHECK(acc.is_contiguous(), name, ": acc must be contiguous");
  const auto dtype = acc.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, name,
              ": float32 or float64 only, got ", dtype);
  for (const at::Tensor* t : {&acc, &pre, &pre_trace, &post, &post_trace}) {
    TORCH_CHECK(t->scalar_type() == dtype, name, ": mixed dtypes");
    TORCH_CHECK(t->device().is_cpu(), name, ": CPU tensors only");
  }
  TORCH_CHECK(in < std::numeric_limits<int32_t>::max() - kLanes &&
                  out < std::numeric_limits<int32_t>::max() - kLanes &&
                  batch < std::numeric_limits<int32_t>::max(),
              name, ": sizes beyond 32-bit positions");
  const at::Tensor pre_c = pre.contiguous(), post_c = post.contiguous();
  // each step reads the traces of the step before and writes the other buffer of the pair (one
  // step needs one buffer each)
  at::Tensor pre_traces[2], post_traces[2];
  for (int64_t k = 0; k < std::min<int64_t>(steps, 2); ++k) {
    pre_traces[k] = at::empty({batch, in}, pre.options());
    post_traces[k] = at::empty({batch, out}, post.options());
  }
  at::Tensor pre_before = pre_trace.contiguous(), post_before = post_trace.contiguous();
  if (steps == 0) return {pre_before.clone(), post_before.clone()};
  at::Tensor target = acc;  // the dense products add into acc itself
  for (int64_t t = 0; t < steps; ++t) {
    const at::Tensor& pre_after = pre_traces[t % 2];
    const at::Tensor& post_after = post_traces[t % 2];
    bool dense_causal = false, dense_anti = false;
    AT_DISPATCH_FLOATING_TYPES(dtype, name, [&] {
      // step t of each sequence by its address (no tensor per step unless a product needs one)
      const scalar_t* pre_t = pre_c.const_data_ptr<scalar_t>() + t * batch * in;
      const scalar_t* post_t = post_c.const_data_ptr<scalar_t>() + t * batch * out;
      trace_step(pre_before.const_data_ptr<scalar_t>(), pre_t, batch * in,
                 static_cast<scalar_t>(pre_decay), nearest, pre_after.mutable_data_ptr<scalar_t>());
      // a term whose spike factor is dense is one dense product (faster there than visiting
      // spikes), added below
      std::tie(dense_causal, dense_anti) = run<scalar_t>(
          acc.mutable_data_ptr<scalar_t>(), pre_t, pre_after.const_data_ptr<scalar_t>(), post_t,
          post_before.const_data_ptr<scalar_t>(), batch, in, out,
          static_cast<scalar_t>(causal_scale), static_cast<scalar_t>(anti_scale));
      trace_step(post_before.const_data_ptr<scalar_t>(), post_t, batch * out,
                 static_cast<scalar_t>(post_decay), nearest,
                 post_after.mutable_data_ptr<scalar_t>());
    });
    if (dense_causal) {
      const at::Tensor post_t = post_c.view({steps, batch, out})[t];
      target.addmm_(post_t.t(), pre_after, 1.0, causal_scale);
    }
    if (dense_anti) {
      const at::Tensor pre_t = pre_c.view({steps, batch, in})[t];
      target.addmm_(post_before.t(), pre_t, 1.0, anti_scale);
    }
    pre_before = pre_after;
    post_before = post_after;
  }
  return {pre_before, post_before};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(plasticity_plugins_cpu, m) {
  m.def(
      "pair_stdp_linear_(Tensor(a!) acc, Tensor pre, Tensor pre_trace, Tensor post, "
      "Tensor post_trace, float pre_decay, float post_decay, bool nearest, float causal_scale, "
      "float anti_scale) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(plasticity_plugins_cpu, CPU, m) {
  m.impl("pair_stdp_linear_", &pair_stdp_linear_cpu);
}
