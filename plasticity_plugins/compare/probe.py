"""The linear probe that scores unsupervised rules: ridge regression on spike counts.

An unsupervised rule (STDP) has no output layer to read; its accuracy is that of the best
linear read-out of what it learned: a ridge regression from the hidden layer's spike counts
(standardised with the training set's statistics, plus a bias) to one-hot labels, fitted in
closed form on the training images with learning paused, scored on the test images.
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    num_classes: int,
    ridge: float = 1.0,
) -> Tensor:
    """Predicted classes of ``test_features`` by a closed-form ridge regression.

    ``W = (X^T X + ridge * I)^-1 X^T Y`` on standardised features ``X`` (with a bias column,
    not penalised) and one-hot targets ``Y``, in float64.

    Args:
        train_features: ``[N, F]`` (e.g. spike counts).
        train_labels: ``[N]`` integer classes.
        test_features: ``[M, F]``.
        num_classes: number of classes.
        ridge: the L2 penalty (in units of standardised features).

    Returns:
        ``[M]`` int64 predictions.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [5.0], [6.0]])
        >>> linear_probe(x, torch.tensor([0, 0, 1, 1]), torch.tensor([[0.5], [5.5]]), 2).tolist()
        [0, 1]
    """
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError(
            f"linear_probe: features must be [N, F], got {tuple(train_features.shape)} and "
            f"{tuple(test_features.shape)}"
        )
    x = train_features.double()
    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(1e-6)

    def design(features: Tensor) -> Tensor:
        standard = (features.double() - mean) / std
        return torch.cat([standard, torch.ones(len(standard), 1, dtype=torch.float64)], 1)

    train = design(x)
    targets = torch.nn.functional.one_hot(train_labels.long(), num_classes).double()
    penalty = ridge * torch.eye(train.shape[1], dtype=torch.float64)
    penalty[-1, -1] = 0.0
    weights = torch.linalg.solve(train.T @ train + penalty, train.T @ targets)
    return (design(test_features) @ weights).argmax(1)
