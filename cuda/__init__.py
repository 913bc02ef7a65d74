"""CUDA sources of plasticity_plugins, compiled on demand (see README.md)."""
