// DECOLLE's per-step readout work, CPU: registers plasticity_plugins_cpu::decolle_learning_signal
// and plasticity_plugins_cpu::decolle_votes_.
//
// The torch path of plasticity_plugins/rules/decolle.py (its fallback and test oracle) spends a
// dozen small tensor operations per layer and step on the readout (dropout mask, two products
// with the readout, the clamped error, the surrogate); here each row (one sample at one step) is
// one pass: with G the fixed readout [C, N], keep the dropout factor (0 or 1 / (1 - p)), SG the
// surrogate derivative and y the one-hot target,
//
//   r[c]     = sum_n keep[n] s[n] G[c, n]                   (only the nonzero spikes are visited)
//   e[c]     = clamp(r[c] - y[c], -1, 1) * error_scale      (SmoothL1's derivative, averaged)
//   post[n]  = keep[n] * SG[n] * sum_c e[c] G[c, n]         (dL/ds times the surrogate)
//
// with SG[n] = 1 / (10 |u[n] - threshold| + 1)^2 (DECOLLE's own surrogate) or a given psi[n].
// decolle_votes_ adds one vote per row for argmax_c sum_n s[n] G[c, n] (no dropout).
//
// The dropout mask comes from one xoshiro256+ stream per row (32 random bits per entry), seeded
// from a number drawn from torch's default CPU generator: torch.manual_seed makes it
// reproducible, and it does not depend on the number of threads. Rows run in parallel.
//
// Loaded as a plain shared library (no pybind11 module), reached through torch.ops.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <type_traits>
#include <vector>

#include "stdp_cpu.h"

namespace {

using plasticity_plugins_cpu_detail::nonzeros;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// xoshiro256+ (Blackman & Vigna), one stream per row: 64 random bits per call.
class RowStream {
 public:
  RowStream(uint64_t seed, uint64_t row) {
    uint64_t x = seed ^ splitmix64(row);
    for (uint64_t& word : state_) word = x = splitmix64(x);
  }
  uint64_t next() {
    const uint64_t result = state_[0] + state_[3];
    const uint64_t shifted = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= shifted;
    state_[3] = (state_[3] << 45) | (state_[3] >> 19);
    return result;
  }

 private:
  uint64_t state_[4];
};

uint64_t draw_seed() {
  auto* generator = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(generator->mutex_);
  return generator->random64();
}

// kept if keep, else 0, by masking kept's bits: a select or a bool-to-float conversion here
// (a branch on random bits, or a conversion chained through its destination register) made the
// dropout mask cost four times the random numbers it is drawn from.
template <typename scalar_t>
scalar_t kept_or_zero(scalar_t kept, bool keep) {
  using bits_t = std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint64_t>;
  static_assert(sizeof(bits_t) == sizeof(scalar_t), "float32 or float64");
  bits_t bits;
  std::memcpy(&bits, &kept, sizeof bits);
  bits &= bits_t(0) - static_cast<bits_t>(keep);
  scalar_t out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// The readout transposed, [N, C]: a spike's C weights side by side.
template <typename scalar_t>
std::vector<scalar_t> transposed(const scalar_t* readout, int64_t classes, int64_t n) {
  std::vector<scalar_t> out(n * classes);
  for (int64_t c = 0; c < classes; ++c)
    for (int64_t k = 0; k < n; ++k) out[k * classes + c] = readout[c * n + k];
  return out;
}

// out[k] = sum_c error[c] G[c, k]: the error projected back through the readout G [C, N].
template <typename scalar_t>
void back_projection(const scalar_t* error, const scalar_t* readout, int64_t classes, int64_t n,
                     scalar_t* out) {
  constexpr int64_t kWidth = 32 / sizeof(scalar_t) * 2;  // two vector registers of sums
  int64_t k = 0;
  for (; k + kWidth <= n; k += kWidth) {
    scalar_t sum[kWidth] = {};
    for (int64_t c = 0; c < classes; ++c) {
      const scalar_t e = error[c];
      const scalar_t* weights = readout + c * n + k;
#pragma omp simd
      for (int64_t j = 0; j < kWidth; ++j) sum[j] += e * weights[j];
    }
    std::copy(sum, sum + kWidth, out + k);
  }
  for (; k < n; ++k) {
    scalar_t sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += error[c] * readout[c * n + k];
    out[k] = sum;
  }
}

template <typename scalar_t>
void learning_signal(const scalar_t* spikes, const scalar_t* membrane_or_psi, scalar_t threshold,
                     bool is_psi, const scalar_t* readout, const int64_t* target,
                     const scalar_t* keep, double dropout, scalar_t error_scale, int64_t rows,
                     int64_t batch, int64_t n, int64_t classes, scalar_t* post) {
  const std::vector<scalar_t> by_spike = transposed(readout, classes, n);
  const uint64_t seed = keep == nullptr && dropout > 0 ? draw_seed() : 0;
  const scalar_t kept = static_cast<scalar_t>(1.0 / (1.0 - dropout));
  const auto drop_below = static_cast<uint64_t>(std::ceil(dropout * 4294967296.0));
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> factor(n), error(classes), dropped(n);
    std::vector<int32_t> position(n + 8);  // nonzeros writes up to eight entries past the count
    std::vector<scalar_t> value(n + 8);
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* s = spikes + r * n;
      scalar_t* out = post + r * n;
      if (keep != nullptr) {
        std::copy(keep + r * n, keep + (r + 1) * n, factor.begin());
      } else if (dropout > 0) {
        // an entry is kept when its 32 random bits reach ceil(dropout * 2^32)
        RowStream stream(seed, static_cast<uint64_t>(r));
        for (int64_t k = 0; k < n; k += 2) {
          const uint64_t bits = stream.next();
          factor[k] = kept_or_zero(kept, (bits & 0xFFFFFFFFull) >= drop_below);
          if (k + 1 < n) factor[k + 1] = kept_or_zero(kept, (bits >> 32) >= drop_below);
        }
      } else {
        std::fill(factor.begin(), factor.end(), scalar_t(1));
      }
      std::fill(error.begin(), error.end(), scalar_t(0));
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) dropped[k] = s[k] * factor[k];
      // the kept spikes, packed without a branch per entry
      const int64_t count = nonzeros(dropped.data(), 1, n, 0, 0, position.data(), value.data());
      for (int64_t e = 0; e < count; ++e) {
        const scalar_t* weights = by_spike.data() + position[e] * classes;
        for (int64_t c = 0; c < classes; ++c) error[c] += value[e] * weights[c];
      }
      const int64_t label = target[r % batch];
      for (int64_t c = 0; c < classes; ++c) {
        const scalar_t difference = error[c] - (c == label ? scalar_t(1) : scalar_t(0));
        error[c] = std::clamp(difference, scalar_t(-1), scalar_t(1)) * error_scale;
      }
      // the error projected back through the readout, kWidth entries at a time (their sums
      // over the classes stay in registers), then times each entry's factor: one pass over out
      back_projection(error.data(), readout, classes, n, out);
      const scalar_t* u = membrane_or_psi + r * n;
      if (is_psi) {
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) out[k] *= factor[k] * u[k];
      } else {
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) {
          const scalar_t root = scalar_t(10) * std::abs(u[k] - threshold) + scalar_t(1);
          out[k] *= factor[k] / (root * root);
        }
      }
    }
  });
}

template <typename scalar_t>
void votes(const scalar_t* spikes, const scalar_t* readout, int64_t rows, int64_t batch,
           int64_t n, int64_t classes, scalar_t* tally) {
  const std::vector<scalar_t> by_spike = transposed(readout, classes, n);
  std::vector<int64_t> winner(rows);
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> score(classes), value(n + 8);
    std::vector<int32_t> position(n + 8);
    for (int64_t r = begin; r < end; ++r) {
      std::fill(score.begin(), score.end(), scalar_t(0));
      const int64_t count = nonzeros(spikes + r * n, 1, n, 0, 0, position.data(), value.data());
      for (int64_t e = 0; e < count; ++e) {
        const scalar_t* weights = by_spike.data() + position[e] * classes;
        for (int64_t c = 0; c < classes; ++c) score[c] += value[e] * weights[c];
      }
      winner[r] = std::max_element(score.begin(), score.end()) - score.begin();  // the first max
    }
  });
  for (int64_t r = 0; r < rows; ++r) tally[(r % batch) * classes + winner[r]] += scalar_t(1);
}

void check_readout(const char* name, const at::Tensor& spikes, const at::Tensor& readout) {
  TORCH_CHECK(spikes.dim() == 2 && readout.dim() == 2 && readout.size(1) == spikes.size(1), name,
              ": spikes must be [rows, N] and the readout [C, N], got ", spikes.sizes(), " and ",
              readout.sizes());
  const auto dtype = spikes.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, name,
              ": float32 or float64 only, got ", dtype);
  TORCH_CHECK(readout.scalar_type() == dtype, name, ": mixed dtypes");
  TORCH_CHECK(spikes.device().is_cpu() && readout.device().is_cpu(), name, ": CPU tensors only");
}

at::Tensor decolle_learning_signal_cpu(const at::Tensor& spikes, const at::Tensor& membrane_or_psi,
                                       double threshold, bool is_psi, const at::Tensor& readout,
                                       const at::Tensor& target, double dropout,
                                       double error_scale, const std::optional<at::Tensor>& keep) {
  constexpr const char* name = "decolle_learning_signal";
  check_readout(name, spikes, readout);
  TORCH_CHECK(membrane_or_psi.sizes() == spikes.sizes() &&
                  membrane_or_psi.scalar_type() == spikes.scalar_type() &&
                  membrane_or_psi.device().is_cpu(),
              name, ": the membrane (or psi) must be a CPU tensor like the spikes");
  TORCH_CHECK(target.dim() == 1 && target.scalar_type() == at::kLong && target.device().is_cpu() &&
                  target.size(0) > 0 && spikes.size(0) % target.size(0) == 0,
              name, ": target must be int64 labels [B] with B dividing the rows, got ",
              target.sizes(), " ", target.scalar_type());
  TORCH_CHECK(dropout >= 0 && dropout < 1, name, ": dropout must be in [0, 1), got ", dropout);
  if (keep.has_value())
    TORCH_CHECK(keep->sizes() == spikes.sizes() && keep->scalar_type() == spikes.scalar_type(),
                name, ": keep must be like the spikes");
  const int64_t classes = readout.size(0);
  const at::Tensor labels = target.contiguous();
  const int64_t* label = labels.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < labels.size(0); ++b)
    TORCH_CHECK(label[b] >= 0 && label[b] < classes, name, ": labels must lie in [0, ",
                classes - 1, "], got ", label[b]);
  const at::Tensor spikes_c = spikes.contiguous(), readout_c = readout.contiguous();
  const at::Tensor membrane_c = membrane_or_psi.contiguous();
  const at::Tensor keep_c = keep.has_value() ? keep->contiguous() : at::Tensor();
  at::Tensor post = at::empty(spikes.sizes(), spikes.options());
  AT_DISPATCH_FLOATING_TYPES(spikes.scalar_type(), name, [&] {
    learning_signal<scalar_t>(
        spikes_c.const_data_ptr<scalar_t>(), membrane_c.const_data_ptr<scalar_t>(),
        static_cast<scalar_t>(threshold), is_psi, readout_c.const_data_ptr<scalar_t>(), label,
        keep_c.defined() ? keep_c.const_data_ptr<scalar_t>() : nullptr, dropout,
        static_cast<scalar_t>(error_scale), spikes.size(0), labels.size(0), spikes.size(1),
        classes, post.mutable_data_ptr<scalar_t>());
  });
  return post;
}

void decolle_votes_cpu(const at::Tensor& tally, const at::Tensor& spikes,
                       const at::Tensor& readout) {
  constexpr const char* name = "decolle_votes_";
  check_readout(name, spikes, readout);
  TORCH_CHECK(tally.dim() == 2 && tally.size(1) == readout.size(0) && tally.size(0) > 0 &&
                  spikes.size(0) % tally.size(0) == 0 && tally.is_contiguous() &&
                  tally.scalar_type() == spikes.scalar_type() && tally.device().is_cpu(),
              name, ": votes must be a contiguous CPU tensor [B, C] like the spikes, with B "
              "dividing the rows, got ", tally.sizes());
  const at::Tensor spikes_c = spikes.contiguous(), readout_c = readout.contiguous();
  AT_DISPATCH_FLOATING_TYPES(spikes.scalar_type(), name, [&] {
    votes<scalar_t>(spikes_c.const_data_ptr<scalar_t>(), readout_c.const_data_ptr<scalar_t>(),
                    spikes.size(0), tally.size(0), spikes.size(1), readout.size(0),
                    tally.mutable_data_ptr<scalar_t>());
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(plasticity_plugins_cpu, m) {
  m.def(
      "decolle_learning_signal(Tensor spikes, Tensor membrane_or_psi, float threshold, "
      "bool is_psi, Tensor readout, Tensor target, float dropout, float error_scale, "
      "Tensor? keep=None) -> Tensor");
  m.def("decolle_votes_(Tensor(a!) votes, Tensor spikes, Tensor readout) -> ()");
}

TORCH_LIBRARY_IMPL(plasticity_plugins_cpu, CPU, m) {
  m.impl("decolle_learning_signal", &decolle_learning_signal_cpu);
  m.impl("decolle_votes_", &decolle_votes_cpu);
}
