// k-winners-take-all on CPU tensors: registers plasticity_plugins_cpu::k_winners.
//
// The same choices as the pure-torch k_winners of plasticity_plugins/kernels/competition.py
// (its fallback and test oracle): per sample, winners are chosen one at a time among the neurons
// that spiked (finite time; NaN and -inf did not) and are not inhibited; the earliest time wins,
// then the larger potential (NaN ranks as +inf), then the lowest flat index (feature, position).
// A winner inhibits its feature and the positions of its row of `windows` in every feature.
//
// Each feature's best candidate is kept in a table, filled by one pass over the sample; a chosen
// entry whose position has been inhibited since is recomputed (inhibition only removes
// candidates, so an entry whose position is still free is still its feature's best).
//
// Loaded as a plain shared library (no pybind11 module), reached through torch.ops.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

template <typename scalar_t>
struct Candidate {
  scalar_t time;
  scalar_t potential;
  int64_t position;  // -1: the feature has no candidate left
};

template <typename scalar_t>
bool better(const Candidate<scalar_t>& a, const Candidate<scalar_t>& b) {
  if (a.position < 0) return false;
  if (b.position < 0) return true;
  return a.time < b.time || (a.time == b.time && a.potential > b.potential);
}

// The earliest spike time in a row (inf: none), skipping NaN, -inf and inhibited positions.
template <typename scalar_t>
scalar_t earliest_in_row(const scalar_t* time, int64_t positions, const uint8_t* inhibited) {
  constexpr scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  scalar_t earliest = inf;
  if (inhibited == nullptr) {
#pragma omp simd reduction(min : earliest)
    for (int64_t pos = 0; pos < positions; ++pos) {
      const scalar_t t = time[pos];
      earliest = std::min(earliest, (t == t && t != -inf) ? t : inf);
    }
  } else {
#pragma omp simd reduction(min : earliest)
    for (int64_t pos = 0; pos < positions; ++pos) {
      const scalar_t t = time[pos];
      earliest = std::min(earliest, (inhibited[pos] == 0 && t == t && t != -inf) ? t : inf);
    }
  }
  return earliest;
}

// Bit i of the result: time[i] == value, for i < kChunk (the full chunk must be readable).
constexpr int64_t kChunk = 16;

template <typename scalar_t>
uint32_t equal_mask(const scalar_t* time, scalar_t value) {
  uint32_t mask = 0;
  for (int64_t i = 0; i < kChunk; ++i) mask |= static_cast<uint32_t>(time[i] == value) << i;
  return mask;
}

#if defined(__AVX512F__)
template <>
uint32_t equal_mask<float>(const float* time, float value) {
  return _mm512_cmp_ps_mask(_mm512_loadu_ps(time), _mm512_set1_ps(value), _CMP_EQ_OQ);
}
template <>
uint32_t equal_mask<double>(const double* time, double value) {
  const __m512d v = _mm512_set1_pd(value);
  return _mm512_cmp_pd_mask(_mm512_loadu_pd(time), v, _CMP_EQ_OQ) |
         (static_cast<uint32_t>(_mm512_cmp_pd_mask(_mm512_loadu_pd(time + 8), v, _CMP_EQ_OQ))
          << 8);
}
#elif defined(__AVX2__)
template <>
uint32_t equal_mask<float>(const float* time, float value) {
  const __m256 v = _mm256_set1_ps(value);
  const uint32_t low = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(time), v, _CMP_EQ_OQ));
  const uint32_t high =
      _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(time + 8), v, _CMP_EQ_OQ));
  return low | (high << 8);
}
#endif

// Writes the free positions of a row whose time is `earliest` to `hits` (ascending; room for
// `positions` entries) and returns their number; prefetches their potentials: they are scattered
// through memory that has not been read yet, and requesting them together overlaps their cache
// misses. The row is tested kChunk positions at a time (one vector compare), so that only the few
// matches cost a branch.
template <typename scalar_t>
int64_t collect_earliest(const scalar_t* time, const scalar_t* potential, int64_t positions,
                         scalar_t earliest, const uint8_t* inhibited, int64_t* hits) {
  static_assert(kChunk <= 32, "a chunk's matches are a 32-bit mask");
  int64_t count = 0;
  int64_t start = 0;
  for (; start + kChunk <= positions; start += kChunk) {
    for (uint32_t mask = equal_mask(time + start, earliest); mask != 0; mask &= mask - 1) {
      const int64_t pos = start + __builtin_ctz(mask);
      hits[count] = pos;
      count += inhibited == nullptr || !inhibited[pos];
      __builtin_prefetch(potential + pos);
    }
  }
  for (; start < positions; ++start) {
    hits[count] = start;
    count += time[start] == earliest && (inhibited == nullptr || !inhibited[start]);
  }
  return count;
}

// The best of a row's earliest spikes: the larger potential (NaN as +inf), then the lower
// position (`hits` is ascending).
template <typename scalar_t>
Candidate<scalar_t> best_of(const scalar_t* potential, scalar_t earliest, const int64_t* hits,
                            const int64_t* hits_end) {
  constexpr scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  Candidate<scalar_t> best{inf, -inf, -1};
  for (; hits != hits_end; ++hits) {
    scalar_t p = potential[*hits];
    if (p != p) p = inf;
    if (best.position < 0 || p > best.potential) best = {earliest, p, *hits};
  }
  return best;
}

template <typename scalar_t>
Candidate<scalar_t> best_in_row(const scalar_t* time, const scalar_t* potential, int64_t positions,
                                const uint8_t* inhibited, int64_t* hits) {
  const scalar_t earliest = earliest_in_row(time, positions, inhibited);
  const bool silent = earliest == std::numeric_limits<scalar_t>::infinity();
  const int64_t count =
      silent ? 0 : collect_earliest(time, potential, positions, earliest, inhibited, hits);
  return best_of(potential, earliest, hits, hits + count);
}

template <typename scalar_t>
void k_winners_kernel(const at::Tensor& time, const at::Tensor& potential, int64_t k,
                      const at::Tensor& windows, at::Tensor& out) {
  constexpr scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  const int64_t batch = time.size(0), features = time.size(1), positions = time.size(2);
  const int64_t window = windows.size(1);
  const scalar_t* time_data = time.const_data_ptr<scalar_t>();
  const scalar_t* potential_data = potential.const_data_ptr<scalar_t>();
  const int64_t* window_data = windows.const_data_ptr<int64_t>();
  bool* out_data = out.mutable_data_ptr<bool>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<Candidate<scalar_t>> table(features);
    std::vector<scalar_t> earliest(features);
    std::vector<int64_t> hits(positions), hits_start(features + 1);
    std::vector<uint8_t> inhibited(positions);
    std::vector<uint8_t> removed(features);
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* time_b = time_data + b * features * positions;
      const scalar_t* potential_b = potential_data + b * features * positions;
      // the table: each row's earliest spikes (the row is still in L1 for the second look),
      // then their potentials, once all rows' were requested, so that their cache misses overlap
      hits_start[0] = 0;
      for (int64_t f = 0; f < features; ++f) {
        const scalar_t* time_f = time_b + f * positions;
        earliest[f] = earliest_in_row(time_f, positions, nullptr);
        int64_t count = 0;
        if (earliest[f] != inf) {
          if (static_cast<int64_t>(hits.size()) < hits_start[f] + positions)
            hits.resize(hits_start[f] + positions);
          count = collect_earliest(time_f, potential_b + f * positions, positions, earliest[f],
                                   nullptr, hits.data() + hits_start[f]);
        }
        hits_start[f + 1] = hits_start[f] + count;
      }
      for (int64_t f = 0; f < features; ++f)
        table[f] = best_of(potential_b + f * positions, earliest[f], hits.data() + hits_start[f],
                           hits.data() + hits_start[f + 1]);
      std::fill(inhibited.begin(), inhibited.end(), 0);
      std::fill(removed.begin(), removed.end(), 0);
      bool any_inhibited = false;
      for (int64_t chosen_count = 0; chosen_count < k;) {
        int64_t chosen = -1;
        for (int64_t f = 0; f < features; ++f)
          if (!removed[f] && table[f].position >= 0 &&
              (chosen < 0 || better(table[f], table[chosen])))
            chosen = f;
        if (chosen < 0) break;  // no candidate left
        const int64_t pos = table[chosen].position;
        if (any_inhibited && inhibited[pos]) {  // inhibited since the entry was made
          table[chosen] = best_in_row(time_b + chosen * positions, potential_b + chosen * positions,
                                      positions, inhibited.data(), hits.data());
          continue;
        }
        out_data[(b * features + chosen) * positions + pos] = true;
        removed[chosen] = 1;
        for (int64_t w = 0; w < window; ++w) inhibited[window_data[pos * window + w]] = 1;
        any_inhibited = window > 0;
        ++chosen_count;
      }
    }
  });
}

at::Tensor k_winners_cpu(const at::Tensor& time, const at::Tensor& potential, int64_t k,
                         const at::Tensor& windows) {
  TORCH_CHECK(time.device().is_cpu() && potential.device().is_cpu() && windows.device().is_cpu(),
              "plasticity_plugins_cpu::k_winners: expected CPU tensors");
  TORCH_CHECK(time.dim() == 3 && potential.sizes() == time.sizes(),
              "plasticity_plugins_cpu::k_winners: expected time and potential of the same shape "
              "[B, F, P], got ", time.sizes(), " and ", potential.sizes());
  TORCH_CHECK(time.scalar_type() == potential.scalar_type() &&
                  (time.scalar_type() == at::kFloat || time.scalar_type() == at::kDouble),
              "plasticity_plugins_cpu::k_winners: expected float32 or float64 time and potential "
              "of one dtype, got ", time.scalar_type(), " and ", potential.scalar_type());
  TORCH_CHECK(windows.dim() == 2 && windows.size(0) == time.size(2) &&
                  windows.scalar_type() == at::kLong,
              "plasticity_plugins_cpu::k_winners: expected int64 windows of shape [P, W], got ",
              windows.sizes(), " ", windows.scalar_type());
  TORCH_CHECK(k >= 1, "plasticity_plugins_cpu::k_winners: expected k >= 1, got ", k);
  const at::Tensor t = time.contiguous(), p = potential.contiguous(), w = windows.contiguous();
  at::Tensor out = at::zeros(time.sizes(), time.options().dtype(at::kBool));
  if (t.scalar_type() == at::kDouble)
    k_winners_kernel<double>(t, p, k, w, out);
  else
    k_winners_kernel<float>(t, p, k, w, out);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(plasticity_plugins_cpu, m) {
  m.def("k_winners(Tensor time, Tensor potential, int k, Tensor windows) -> Tensor");
}

TORCH_LIBRARY_IMPL(plasticity_plugins_cpu, CPU, m) { m.impl("k_winners", &k_winners_cpu); }
