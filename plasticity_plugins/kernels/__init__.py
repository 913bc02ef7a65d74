"""Framework-agnostic rule kernels: pure functions on tensors."""
