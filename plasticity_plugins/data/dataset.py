"""``SpikeDataset``: one labelled train / test split and its spike encoding, whatever the source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..kernels.encoding import poisson_rate

__all__ = ["DEFAULT_STEPS", "Kind", "SpikeDataset"]

Kind = Literal["static", "events"]
"""``"static"``: intensities in [0, 1], rate-coded on demand; ``"events"``: event-count frames."""

DEFAULT_STEPS = 20
"""Time steps of the Poisson code of a static data set when ``to_spikes`` is given none."""


@dataclass(frozen=True, eq=False)
class SpikeDataset:
    """A train / test split held in memory, and how to turn a batch of it into spikes.

    Attributes:
        name: the registry name (``"mnist-subset"``, ``"nmnist"``, ...).
        kind: ``"static"`` (``x`` is ``[N, *input_shape]`` in [0, 1]) or ``"events"`` (``x`` is
            ``[N, native_steps, *input_shape]`` event counts per frame).
        x_train: training inputs, float32.
        y_train: training labels, int64 ``[N]`` in ``0..num_classes - 1``.
        x_test: test inputs, float32.
        y_test: test labels, int64.
        num_classes: number of classes.
        input_shape: shape of one sample at one time step, e.g. ``(784,)`` or ``(2, 34, 34)``.
        native_steps: number of frames of an event data set; ``None`` for static data.
        default_steps: steps of ``to_spikes`` when none are given (``native_steps`` for events).

    Example:
        >>> x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> y = torch.tensor([0, 1])
        >>> ds = SpikeDataset("toy", "static", x, y, x, y, num_classes=2, input_shape=(2,))
        >>> ds.to_spikes(ds.x_train, steps=3).shape
        torch.Size([3, 2, 2])
        >>> ds.describe()
        'toy: static, 2 classes, train 2 / test 2, input (2,) per step; Poisson rate code, ...'
    """

    name: str
    kind: Kind
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    native_steps: int | None = None
    default_steps: int = DEFAULT_STEPS

    def __post_init__(self) -> None:
        if self.kind not in ("static", "events"):
            raise ValueError(f"{self.name}: kind must be 'static' or 'events', got {self.kind!r}")
        if self.kind == "events":
            if self.native_steps is None or self.native_steps < 1:
                raise ValueError(f"{self.name}: event data needs native_steps >= 1")
            object.__setattr__(self, "default_steps", self.native_steps)
        elif self.native_steps is not None:
            raise ValueError(f"{self.name}: static data has native_steps None")
        object.__setattr__(self, "input_shape", tuple(int(n) for n in self.input_shape))
        expected = self._sample_shape()
        for part, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if tuple(x.shape[1:]) != expected:
                raise ValueError(
                    f"{self.name}: x_{part} must be [N, {', '.join(map(str, expected))}], "
                    f"got {list(x.shape)}"
                )
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise ValueError(
                    f"{self.name}: need float32 inputs and int64 labels, got {x.dtype}, {y.dtype}"
                )
            if y.shape != (len(x),):
                raise ValueError(
                    f"{self.name}: y_{part} must be [{len(x)}] labels, got {list(y.shape)}"
                )

    def _sample_shape(self) -> tuple[int, ...]:
        if self.kind == "events":
            assert self.native_steps is not None
            return (self.native_steps, *self.input_shape)
        return self.input_shape

    def to_spikes(
        self,
        x: Tensor,
        steps: int | None = None,
        *,
        max_rate: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A batch of inputs as time-first spikes ``[T, B, *input_shape]``, float32 in {0, 1}.

        Static data: Poisson rate code
        (:func:`plasticity_plugins.kernels.encoding.poisson_rate`), spike probability
        ``x * max_rate`` per step, ``steps`` steps (default ``default_steps``). Event data: the
        frames moved time-first and clamped to {0, 1} (a pixel with several events in one frame
        spikes once); ``steps`` must be ``None`` or ``native_steps`` (reload with another
        ``n_time_bins`` to change it), and ``max_rate`` / ``generator`` are unused.

        Args:
            x: ``[B, *input_shape]`` (static) or ``[B, native_steps, *input_shape]`` (events).
            steps: number of time steps ``T``.
            max_rate: spike probability per step at intensity 1 (static data).
            generator: RNG of the Poisson code, for reproducible spikes (static data).

        Raises:
            ValueError: ``x`` of the wrong shape, or ``steps`` that event data cannot give.
        """
        expected = self._sample_shape()
        if tuple(x.shape[1:]) != expected or x.dim() != len(expected) + 1:
            raise ValueError(
                f"{self.name}.to_spikes: x must be a batch [B, {', '.join(map(str, expected))}], "
                f"got {list(x.shape)}"
            )
        if self.kind == "events":
            if steps is not None and steps != self.native_steps:
                raise ValueError(
                    f"{self.name}.to_spikes: event frames have {self.native_steps} steps, "
                    f"got steps={steps}; load the data set again with "
                    f"n_time_bins={steps} to change the number of frames"
                )
            return (x.movedim(1, 0) > 0).to(torch.float32)
        if steps is None:
            steps = self.default_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{self.name}.to_spikes: steps must be a positive int, got {steps!r}")
        return poisson_rate(x.to(torch.float32), steps, max_rate=max_rate, generator=generator)

    def describe(self) -> str:
        """One line: name, kind, classes, sizes, input shape per step and the spike encoding."""
        if self.kind == "events":
            encoding = f"{self.native_steps} event frames clamped to {{0, 1}}"
        else:
            encoding = f"Poisson rate code, {self.default_steps} steps by default"
        return (
            f"{self.name}: {self.kind}, {self.num_classes} classes, "
            f"train {len(self.x_train)} / test {len(self.x_test)}, "
            f"input {self.input_shape} per step; {encoding}"
        )
