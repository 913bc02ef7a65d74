// One time step of pair (or triplet) STDP on a Conv2d synapse (stride 1, dilation 1, one group),
// CPU: registers plasticity_plugins_cpu::pair_stdp_conv2d_step.
//
// The sums of the torch path of plasticity_plugins/kernels/stdp.py (its fallback and test
// oracle), for one step:
//
//   causal[o, c, i, j] = sum_{b, y, x} post[b, o, y, x] * pre_trace[b, c, y - ph + i, x - pw + j]
//   anti[o, c, i, j]   = sum_{b, y, x} post_trace[b, o, y, x] * pre[b, c, y - ph + i, x - pw + j]
//   post_trace'        = decay * post_trace + post     (nearest: post where post != 0)
//
// (input positions outside the map are zero padding; with trace_spikes given, the trace advances by
// those instead of post: triplet STDP weights its post spikes by a second trace but counts them
// plainly in the first; with advance_trace false, the trace is not computed and the third output is
// an empty tensor, for callers that hold the traces already; with per_sample, the sums are kept
// per sample, [B, *weight shape], for per-sample eligibilities). Both sums are weight-gradient
// convolutions; here each visits only the nonzero spikes of its spike factor, one post channel at a
// time, so that everything it reads stays in the first-level cache: the causal sum adds, for every
// nonzero post spike of channel o, the kernel_w-wide rows of the pre trace under its receptive
// field (a zero-bordered copy of the sample's pre trace); the anti-causal sum adds, for every
// nonzero pre spike, the rows of channel o's old post trace that the spike reaches (a zero-bordered
// copy of that plane). A row is summed eight lanes wide (kernel_w <= 8). The post trace is updated
// in the same pass over the plane. Parallel over the batch, with per-thread sums added at the end.
//
// Loaded as a plain shared library (no pybind11 module), reached through torch.ops.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "stdp_cpu.h"

namespace {

using plasticity_plugins_cpu_detail::nonzeros;
using plasticity_plugins_cpu_detail::trace_step;

constexpr int64_t kLanes = 8;  // a kernel row is summed in eight lanes

struct Geometry {
  int64_t in_channels, in_h, in_w;
  int64_t out_channels, out_h, out_w;
  int64_t kernel_h, kernel_w, pad_h, pad_w;
  // zero-bordered copies: the sample's pre trace (rows in_h + 2 pad_h) and one plane of the
  // post trace (border kernel - 1 on every side), each row with kLanes of slack for a full-width
  // read at its last position
  int64_t pre_row() const { return in_w + 2 * pad_w + kLanes; }
  int64_t pre_plane() const { return (in_h + 2 * pad_h) * pre_row(); }
  int64_t trace_row() const { return out_w + 2 * (kernel_w - 1) + kLanes; }
  int64_t trace_plane() const { return (out_h + 2 * (kernel_h - 1)) * trace_row(); }
};

// out[r * kLanes + l] += sum_k value[k] * origin[offset[k] + row_offset[r] + l] for r < kRows,
// l < kLanes: the rows' sums are held in registers while the entries are read once.
template <typename scalar_t, int kRows>
void gather_block(const scalar_t* origin, const int32_t* row_offset, const int32_t* offset,
                  const scalar_t* value, int64_t count, scalar_t* out) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<scalar_t, float>) {
    __m256 sum[kRows];
    int32_t shift[kRows];
    for (int r = 0; r < kRows; ++r) {
      sum[r] = _mm256_setzero_ps();
      shift[r] = row_offset[r];
    }
    for (int64_t k = 0; k < count; ++k) {
      const __m256 v = _mm256_set1_ps(value[k]);
      const float* at = origin + offset[k];
      for (int r = 0; r < kRows; ++r)
        sum[r] = _mm256_fmadd_ps(v, _mm256_loadu_ps(at + shift[r]), sum[r]);
    }
    for (int r = 0; r < kRows; ++r)
      _mm256_storeu_ps(out + r * kLanes,
                       _mm256_add_ps(_mm256_loadu_ps(out + r * kLanes), sum[r]));
    return;
  }
#endif
  scalar_t sum[kRows][kLanes] = {};
  for (int64_t k = 0; k < count; ++k) {
    const scalar_t* at = origin + offset[k];
    for (int r = 0; r < kRows; ++r)
      for (int64_t l = 0; l < kLanes; ++l) sum[r][l] += value[k] * at[row_offset[r] + l];
  }
  for (int r = 0; r < kRows; ++r)
    for (int64_t l = 0; l < kLanes; ++l) out[r * kLanes + l] += sum[r][l];
}

// gather_block over any number of rows, in blocks of at most eight rows of near-equal size
// (every block reads all the entries once).
template <typename scalar_t>
void gather_rows(const scalar_t* origin, const int32_t* row_offset, int64_t rows,
                 const int32_t* offset, const scalar_t* value, int64_t count, scalar_t* out) {
  const int64_t blocks = (rows + 7) / 8;
  const int64_t block = (rows + blocks - 1) / blocks;
  for (int64_t r = 0; r < rows; r += block) {
    const int32_t* shift = row_offset + r;
    scalar_t* sums = out + r * kLanes;
    switch (std::min(block, rows - r)) {
      case 1: gather_block<scalar_t, 1>(origin, shift, offset, value, count, sums); break;
      case 2: gather_block<scalar_t, 2>(origin, shift, offset, value, count, sums); break;
      case 3: gather_block<scalar_t, 3>(origin, shift, offset, value, count, sums); break;
      case 4: gather_block<scalar_t, 4>(origin, shift, offset, value, count, sums); break;
      case 5: gather_block<scalar_t, 5>(origin, shift, offset, value, count, sums); break;
      case 6: gather_block<scalar_t, 6>(origin, shift, offset, value, count, sums); break;
      case 7: gather_block<scalar_t, 7>(origin, shift, offset, value, count, sums); break;
      default: gather_block<scalar_t, 8>(origin, shift, offset, value, count, sums); break;
    }
  }
}

// Where each kernel row starts, relative to an entry's offset: causal row (c, i) reads the
// bordered pre trace of channel c i rows down; anti-causal row i reads the bordered post trace
// kernel_h - 1 - i rows down. The same for every sample of a call.
struct RowShifts {
  std::vector<int32_t> causal;  // [C_in * kernel_h]
  std::vector<int32_t> anti;    // [kernel_h]
  explicit RowShifts(const Geometry& g)
      : causal(g.in_channels * g.kernel_h), anti(g.kernel_h) {
    for (int64_t c = 0; c < g.in_channels; ++c)
      for (int64_t i = 0; i < g.kernel_h; ++i)
        causal[c * g.kernel_h + i] = static_cast<int32_t>(c * g.pre_plane() + i * g.pre_row());
    for (int64_t i = 0; i < g.kernel_h; ++i)
      anti[i] = static_cast<int32_t>((g.kernel_h - 1 - i) * g.trace_row());
  }
};

// One sample. pre, pre_trace: [C_in, H_in, W_in]; post, trace_spikes, trace_old, trace_new:
// [C_out, H, W]. causal, anti: [C_out][C_in][kernel_h][kLanes] (anti's lanes in reverse
// kernel_w order). The vectors are the thread's scratch.
template <typename scalar_t>
void sample_step(const Geometry& g, const RowShifts& shifts, const scalar_t* pre,
                 const scalar_t* pre_trace, const scalar_t* post, const scalar_t* trace_spikes,
                 const scalar_t* trace_old, scalar_t* trace_new, scalar_t decay, bool nearest,
                 scalar_t* causal, scalar_t* anti, std::vector<scalar_t>& bordered_pre,
                 std::vector<scalar_t>& bordered_trace, std::vector<int32_t>& offset,
                 std::vector<scalar_t>& value, std::vector<int64_t>& pre_start) {
  const int64_t in_plane = g.in_h * g.in_w;
  const int64_t out_plane = g.out_h * g.out_w;
  const int64_t pre_row = g.pre_row(), trace_row = g.trace_row();
  const int64_t rows = g.in_channels * g.kernel_h;  // kernel rows per output channel

  for (int64_t c = 0; c < g.in_channels; ++c) {
    scalar_t* plane = bordered_pre.data() + c * g.pre_plane();
    for (int64_t y = 0; y < g.in_h; ++y)
      std::copy(pre_trace + c * in_plane + y * g.in_w, pre_trace + c * in_plane + (y + 1) * g.in_w,
                plane + (y + g.pad_h) * pre_row + g.pad_w);
  }
  // pre spikes of channel c: offsets into the bordered trace plane of the output position reached
  // at kernel offset (kernel_h - 1, kernel_w - 1); kernel row i reads kernel_h - 1 - i rows
  // further down, its lane l at kernel column j = kernel_w - 1 - l
  int32_t* pre_offset = offset.data() + out_plane + kLanes;
  scalar_t* pre_value = value.data() + out_plane + kLanes;
  pre_start[0] = 0;  // channel c's spikes: [pre_start[c], pre_start[c + 1])
  for (int64_t c = 0; c < g.in_channels; ++c) {
    const int64_t start = pre_start[c];
    pre_start[c + 1] =
        start + nonzeros(pre + c * in_plane, g.in_h, g.in_w, static_cast<int32_t>(trace_row),
                         static_cast<int32_t>(g.pad_h * trace_row + g.pad_w), pre_offset + start,
                         pre_value + start);
  }

  for (int64_t o = 0; o < g.out_channels; ++o) {
    const scalar_t* spikes = post + o * out_plane;
    const scalar_t* old = trace_old + o * out_plane;
    scalar_t* causal_rows = causal + o * rows * kLanes;
    scalar_t* anti_rows = anti + o * rows * kLanes;

    const int64_t count = nonzeros(spikes, g.out_h, g.out_w, static_cast<int32_t>(pre_row), 0,
                                   offset.data(), value.data());
    if (count > 0)
      gather_rows(bordered_pre.data(), shifts.causal.data(), rows, offset.data(), value.data(),
                  count, causal_rows);

    if (pre_start[g.in_channels] > 0) {
      scalar_t* bordered = bordered_trace.data();
      for (int64_t y = 0; y < g.out_h; ++y)
        std::copy(old + y * g.out_w, old + (y + 1) * g.out_w,
                  bordered + (y + g.kernel_h - 1) * trace_row + g.kernel_w - 1);
      for (int64_t c = 0; c < g.in_channels; ++c) {
        const int64_t start = pre_start[c];
        const int64_t n = pre_start[c + 1] - start;
        if (n == 0) continue;
        gather_rows(bordered, shifts.anti.data(), g.kernel_h, pre_offset + start,
                    pre_value + start, n, anti_rows + c * g.kernel_h * kLanes);
      }
    }

    if (trace_new != nullptr)
      trace_step(old, trace_spikes + o * out_plane, out_plane, decay, nearest,
                 trace_new + o * out_plane);
  }
}

// Adds a thread's row sums ([C_out][C_in][kernel_h][kLanes], anti's lanes reversed) into the
// weight-shaped outputs.
template <typename scalar_t>
void add_row_sums(const Geometry& g, const std::vector<scalar_t>& causal,
                  const std::vector<scalar_t>& anti, scalar_t* causal_out, scalar_t* anti_out) {
  const int64_t rows = g.out_channels * g.in_channels * g.kernel_h;
  const int64_t kernel_w = g.kernel_w;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < kernel_w; ++j) {
      causal_out[r * kernel_w + j] += causal[r * kLanes + j];
      anti_out[r * kernel_w + j] += anti[r * kLanes + kernel_w - 1 - j];
    }
  }
}

template <typename scalar_t>
void run(const Geometry& g, const at::Tensor& pre, const at::Tensor& pre_trace,
         const at::Tensor& post, const at::Tensor& trace_spikes, const at::Tensor& trace_old,
         at::Tensor& trace_new, double decay, bool nearest, bool per_sample,
         at::Tensor& causal_out, at::Tensor& anti_out) {
  const int64_t batch = pre.size(0);
  const int64_t in_size = g.in_channels * g.in_h * g.in_w;
  const int64_t out_size = g.out_channels * g.out_h * g.out_w;
  const int64_t row_sums = g.out_channels * g.in_channels * g.kernel_h * kLanes;
  const int64_t weight_size = g.out_channels * g.in_channels * g.kernel_h * g.kernel_w;
  const scalar_t* pre_data = pre.const_data_ptr<scalar_t>();
  const scalar_t* pre_trace_data = pre_trace.const_data_ptr<scalar_t>();
  const scalar_t* post_data = post.const_data_ptr<scalar_t>();
  const scalar_t* fired_data = trace_spikes.const_data_ptr<scalar_t>();
  const scalar_t* old_data = trace_old.const_data_ptr<scalar_t>();
  scalar_t* new_data = trace_new.numel() > 0 ? trace_new.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* causal_total = causal_out.mutable_data_ptr<scalar_t>();
  scalar_t* anti_total = anti_out.mutable_data_ptr<scalar_t>();
  const RowShifts shifts(g);
  std::mutex total_lock;
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> causal(row_sums, scalar_t(0)), anti(row_sums, scalar_t(0));
    std::vector<scalar_t> bordered_pre(g.in_channels * g.pre_plane(), scalar_t(0));
    std::vector<scalar_t> bordered_trace(g.trace_plane(), scalar_t(0));
    const int64_t entries = g.out_h * g.out_w + in_size + 2 * kLanes;
    std::vector<int32_t> offset(entries);
    std::vector<scalar_t> value(entries);
    std::vector<int64_t> pre_start(g.in_channels + 1);
    for (int64_t b = begin; b < end; ++b) {
      sample_step(g, shifts, pre_data + b * in_size, pre_trace_data + b * in_size,
                  post_data + b * out_size, fired_data + b * out_size, old_data + b * out_size,
                  new_data == nullptr ? nullptr : new_data + b * out_size,
                  static_cast<scalar_t>(decay), nearest, causal.data(), anti.data(), bordered_pre,
                  bordered_trace, offset, value, pre_start);
      if (per_sample) {  // each sample's sums to its own slot (no other thread writes there)
        add_row_sums(g, causal, anti, causal_total + b * weight_size, anti_total + b * weight_size);
        std::fill(causal.begin(), causal.end(), scalar_t(0));
        std::fill(anti.begin(), anti.end(), scalar_t(0));
      }
    }
    if (!per_sample) {
      std::lock_guard<std::mutex> guard(total_lock);
      add_row_sums(g, causal, anti, causal_total, anti_total);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pair_stdp_conv2d_step_cpu(
    const at::Tensor& pre, const at::Tensor& pre_trace, const at::Tensor& post,
    const at::Tensor& post_trace, int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
    int64_t pad_w, double post_decay, bool nearest,
    const std::optional<at::Tensor>& trace_spikes, bool advance_trace, bool per_sample) {
  constexpr const char* name = "pair_stdp_conv2d_step";
  TORCH_CHECK(pre.dim() == 4 && post.dim() == 4, name, ": pre and post must be [B, C, H, W], got ",
              pre.sizes(), " and ", post.sizes());
  TORCH_CHECK(pre_trace.sizes() == pre.sizes() && post_trace.sizes() == post.sizes(), name,
              ": each trace must have its spikes' shape");
  TORCH_CHECK(pre.size(0) == post.size(0), name, ": batch sizes differ");
  const at::Tensor& fired = trace_spikes.has_value() ? *trace_spikes : post;
  TORCH_CHECK(fired.sizes() == post.sizes(), name, ": trace_spikes must have post's shape");
  const auto dtype = pre.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, name,
              ": float32 or float64 only, got ", dtype);
  for (const at::Tensor* t : {&pre, &pre_trace, &post, &post_trace, &fired}) {
    TORCH_CHECK(t->scalar_type() == dtype, name, ": mixed dtypes");
    TORCH_CHECK(t->device().is_cpu(), name, ": CPU tensors only");
  }
  TORCH_CHECK(kernel_h > 0 && kernel_w > 0 && kernel_w <= kLanes, name,
              ": kernel width must be 1 to ", kLanes, ", got ", kernel_w);
  TORCH_CHECK(pad_h >= 0 && pad_w >= 0 && pad_h < kernel_h && pad_w < kernel_w, name,
              ": padding must be below the kernel size, got ", pad_h, ", ", pad_w);
  const Geometry g{pre.size(1),  pre.size(2), pre.size(3), post.size(1), post.size(2),
                   post.size(3), kernel_h,    kernel_w,    pad_h,        pad_w};
  TORCH_CHECK(g.in_h + 2 * pad_h - kernel_h + 1 == g.out_h &&
                  g.in_w + 2 * pad_w - kernel_w + 1 == g.out_w,
              name, ": output size ", post.sizes(), " does not follow from input size ",
              pre.sizes(), " with stride 1 and dilation 1");
  TORCH_CHECK(g.in_channels * g.pre_plane() < std::numeric_limits<int32_t>::max() &&
                  g.trace_plane() < std::numeric_limits<int32_t>::max(),
              name, ": a sample's maps are too large for 32-bit offsets");
  at::Tensor updated = at::empty(advance_trace ? post.sizes() : at::IntArrayRef{0}, post.options());
  std::vector<int64_t> shape{g.out_channels, g.in_channels, kernel_h, kernel_w};
  if (per_sample) shape.insert(shape.begin(), pre.size(0));
  at::Tensor causal = at::zeros(shape, pre.options());
  at::Tensor anti = at::zeros(shape, pre.options());
  const at::Tensor pre_c = pre.contiguous(), pre_trace_c = pre_trace.contiguous();
  const at::Tensor post_c = post.contiguous(), fired_c = fired.contiguous();
  const at::Tensor old_c = post_trace.contiguous();
  if (dtype == at::kFloat) {
    run<float>(g, pre_c, pre_trace_c, post_c, fired_c, old_c, updated, post_decay, nearest,
               per_sample, causal, anti);
  } else {
    run<double>(g, pre_c, pre_trace_c, post_c, fired_c, old_c, updated, post_decay, nearest,
                per_sample, causal, anti);
  }
  return {causal, anti, updated};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(plasticity_plugins_cpu, m) {
  m.def(
      "pair_stdp_conv2d_step(Tensor pre, Tensor pre_trace, Tensor post, Tensor post_trace, "
      "int kernel_h, int kernel_w, int pad_h, int pad_w, float post_decay, bool nearest, "
      "Tensor? trace_spikes=None, bool advance_trace=True, bool per_sample=False) -> "
      "(Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(plasticity_plugins_cpu, CPU, m) {
  m.impl("pair_stdp_conv2d_step", &pair_stdp_conv2d_step_cpu);
}
