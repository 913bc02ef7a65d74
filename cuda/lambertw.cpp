// Torch binding of the Lambert W CUDA kernel: registers plasticity_plugins_cuda::lambertw.
//
// Loaded as a plain shared library (no pybind11 module); Python reaches the op through
// torch.ops.plasticity_plugins_cuda.lambertw. The user-facing op with autograd is
// plasticity_plugins::lambertw, defined in plasticity_plugins/kernels/lambertw.py.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "lambertw.h"

namespace {

at::Tensor lambertw_cuda(const at::Tensor& x) {
  TORCH_CHECK(x.is_cuda(), "plasticity_plugins_cuda::lambertw: expected a CUDA tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "plasticity_plugins_cuda::lambertw: expected float32 or float64, got ",
              x.scalar_type());
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty_like(xc, at::MemoryFormat::Contiguous);
  C10_CUDA_CHECK(plasticity_plugins::lambertw_launch(
      xc.const_data_ptr(), y.mutable_data_ptr(), xc.numel(),
      xc.scalar_type() == at::kDouble, c10::cuda::getCurrentCUDAStream()));
  return y;
}

}  // namespace

TORCH_LIBRARY(plasticity_plugins_cuda, m) { m.def("lambertw(Tensor x) -> Tensor"); }

TORCH_LIBRARY_IMPL(plasticity_plugins_cuda, CUDA, m) { m.impl("lambertw", &lambertw_cuda); }
