// Lambert W function, principal branch W0, for float and double arrays.
//
// Same algorithm as plasticity_plugins/kernels/lambertw.py (the pure-torch oracle):
//   * the arithmetic is done in double for float inputs too (accuracy near -1/e);
//   * domain: x >= the input type's rounding of -1/e; values between that and the true -1/e are
//     the branch point (W = -1); x below gives NaN; NaN gives NaN; +inf gives +inf;
//   * near the branch point (p = sqrt(2 e (x + 1/e)) < 0.05, with x + 1/e computed from a
//     two-double split of 1/e) the branch-point series in p, 12 terms, is the result;
//   * elsewhere exactly 3 Halley steps, w <- w - f / (e^w (w + 1) - (w + 2) f / (2 w + 2)),
//     f = w e^w - x, evaluated as w - 2 g (w + 1) / (2 (w + 1)^2 - (w + 2) g), g = f / e^w
//     (no overflow up to DBL_MAX), starting from
//       |x| <= 0.05: x - x^2 + 1.5 x^3
//       x > 0.05:    L (1 - log1p(L) / (2 + L)), L = log1p(x)              (Winitzki 2003)
//       x < -0.05:   -1 + p (N2 + p) / (N2 + p + N1 p)                     (Barry et al. 2000)
#include "lambertw.h"

#include <cmath>

namespace plasticity_plugins {
namespace {

constexpr double kInvEHi = 0.36787944117144233;      // double(1/e)
constexpr double kInvELo = -1.2428753672788363e-17;  // 1/e - kInvEHi
constexpr double kE = 2.718281828459045;
constexpr double kSeriesP = 0.05;
constexpr double kSmallX = 0.05;
constexpr int kHalleySteps = 3;

__device__ __forceinline__ double branch_series(double p) {
  // W0(-1/e + p^2 / (2e)) = sum_k mu_k p^k, k = 0..11 (Horner).
  double s = 0.002440877991143982666;
  s = fma(s, p, -0.003811298034891999227);
  s = fma(s, p, 0.006014543252956117861);
  s = fma(s, p, -0.009616892024299431707);
  s = fma(s, p, 0.01563563253233392122);
  s = fma(s, p, -0.02598471487360376249);
  s = fma(s, p, 0.04450231481481481481);
  s = fma(s, p, -0.07962962962962962963);
  s = fma(s, p, 0.1527777777777777778);
  s = fma(s, p, -0.3333333333333333333);
  s = fma(s, p, 1.0);
  s = fma(s, p, -1.0);
  return s;
}

__device__ double lambertw0(double x, double lower) {
  if (isnan(x)) return x;
  if (x < lower) return nan("");
  if (isinf(x)) return x;  // +inf
  const double d = fmax((x + kInvEHi) + kInvELo, 0.0);
  const double p = sqrt(2.0 * kE * d);
  if (p < kSeriesP) return branch_series(p);
  double w;
  if (fabs(x) <= kSmallX) {
    w = x - x * x + 1.5 * x * x * x;
  } else if (x > 0.0) {
    const double l = log1p(x);
    w = l * (1.0 - log1p(l) / (2.0 + l));
  } else {
    const double n2 = 10.242640687119285146 + 1.9797586132081854940 * p;
    const double n1 = 0.29289321881345247560 * (1.4142135623730950488 + n2);
    w = -1.0 + p * (n2 + p) / (n2 + p + n1 * p);
  }
  for (int i = 0; i < kHalleySteps; ++i) {
    const double g = w - x * exp(-w);  // f / e^w
    const double wp1 = w + 1.0;
    w -= 2.0 * g * wp1 / (2.0 * wp1 * wp1 - (w + 2.0) * g);
  }
  return w;
}

template <typename T>
__global__ void lambertw_kernel(const T* __restrict__ x, T* __restrict__ y, std::int64_t n,
                                double lower) {
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * gridDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    y[i] = static_cast<T>(lambertw0(static_cast<double>(x[i]), lower));
  }
}

}  // namespace

cudaError_t lambertw_launch(const void* x, void* y, std::int64_t n, bool is_double,
                            cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const std::int64_t wanted = (n + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(wanted < 65535 * 8 ? wanted : 65535 * 8);
  if (is_double) {
    lambertw_kernel<double><<<blocks, kThreads, 0, stream>>>(
        static_cast<const double*>(x), static_cast<double*>(y), n, -kInvEHi);
  } else {
    const double lower = static_cast<double>(static_cast<float>(-kInvEHi));
    lambertw_kernel<float><<<blocks, kThreads, 0, stream>>>(
        static_cast<const float*>(x), static_cast<float*>(y), n, lower);
  }
  return cudaGetLastError();
}

}  // namespace plasticity_plugins
