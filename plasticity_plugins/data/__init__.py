"""Offline data sets (MNIST subset, Yin-Yang, event streams)."""
