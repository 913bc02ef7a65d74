// Lambert W (principal branch) on CUDA: launcher shared by lambertw.cu and its torch binding.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace plasticity_plugins {

// y[i] = W0(x[i]) for i < n. `is_double` selects double (else float) for both x and y; the
// arithmetic is done in double either way. Returns the launch status (cudaSuccess on success).
cudaError_t lambertw_launch(const void* x, void* y, std::int64_t n, bool is_double,
                            cudaStream_t stream);

}  // namespace plasticity_plugins
