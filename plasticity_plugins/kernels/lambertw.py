"""Lambert W function, principal branch W0, as a PyTorch custom op with autograd.

``W0(x)`` is the real solution ``w >= -1`` of ``w * exp(w) = x`` for ``x >= -1/e``. The Fast &
Deep rule (Göltz, Kriener et al., Nat. Mach. Intell. 2021) needs it for the first-spike time of a
LIF neuron with ``tau_m = tau_s``: ``T = tau * (b/a - W0(z))``, ``z = -(c/a) exp(b/a)``, and no
spike when ``z < -1/e``.

Only the principal branch is provided (no ``W-1``).

Algorithm (the same in the pure-torch implementation and in ``cuda/lambertw.cu``); every input is
computed in float64 and cast back, so float32 results are correctly rounded up to a few ulp even
next to the branch point (iterating in float32 loses ~2e-6 there):

* near the branch point, ``p = sqrt(2 e (x + 1/e)) < 0.05`` with ``x + 1/e`` computed from a
  two-double split of ``1/e``: the branch-point series ``W0 = sum_k mu_k p^k`` (12 terms;
  ``-1 + p - p^2/3 + 11/72 p^3 - ...``), accurate to ~1e-18 where Halley's method is
  ill-conditioned;
* elsewhere exactly 3 Halley steps (a fixed count: never loops), as in the reference CUDA kernel,
  ``w <- w - f / (e^w (w + 1) - (w + 2) f / (2 w + 2))``, ``f = w e^w - x``, evaluated as
  ``w - 2 g (w + 1) / (2 (w + 1)^2 - (w + 2) g)`` with ``g = f e^-w = w - x e^-w`` (the same
  step, one division, and nothing overflows up to the largest double), from the initial guesses

  - ``|x| <= 0.05``: ``x - x^2 + 1.5 x^3`` (error <= 3.3e-4);
  - ``x > 0.05``: Winitzki's ``L (1 - log1p(L) / (2 + L))``, ``L = log1p(x)`` (error <= 2.0 %);
  - ``x < -0.05``: Barry et al.'s ``-1 + p (N2 + p) / (N2 + p + N1 p)`` (error <= 1.3e-4), as
    in the reference kernel.

  The reference kernel's ``x > 0`` guess ``ln(1.2 x / ln(2.4 x / log1p(2.4 x)))`` (error <= 2.4 %)
  is not used: it overflows for ``x`` below ~1e-20 and above ~7e307 and needs three logarithms
  and two divisions where Winitzki's needs two logarithms and one; logarithms dominate the cost
  (~1.2x slower end to end, measured on CPU). The result does not depend on the guess: 3 steps
  reach float64 rounding from any guess within a few percent (measured: 2.2e-15 relative to
  mpmath over [-1/e, 1.8e308]).

The CUDA kernel departs from this in one way, for speed: on ``-0.05 <= x <= 1e30`` it computes
the guess and the first Halley step in float32 and only the last step in float64 (cubic
convergence takes the float stage's <= 5e-6 to ~1e-15 relative; the GPU test holds it to 1e-14
of this implementation). That halves its float64 work: 53-54 % of an H100's peak memory
bandwidth at 1e8 float64 values (``benchmarks/lambertw.py``).

Special values: ``x < -1/e`` gives NaN (no real value; the Fast & Deep rule reads it as "no
spike"), except that the float16, float32 and float64 roundings of ``-1/e``, which lie just below
it, are taken as ``-1/e`` and give ``-1`` (bfloat16 rounds ``-1/e`` to ``-0.3671875``, above it,
which gives ``W = -0.941...``); ``+inf`` gives ``+inf``; ``-inf`` and NaN give
NaN; ``-0.0`` gives ``-0.0``.

Derivative: ``dW/dx = W / (x (1 + W)) = exp(-W) / (1 + W)``, computed in the second form, which is
``1`` at ``x = 0``, ``+inf`` at the branch point and ``0`` at ``+inf``.

Implementations behind the op ``plasticity_plugins::lambertw`` (the choice is made at every
call):

* CUDA tensors (float32/float64): the kernel of ``cuda/lambertw.cu``, compiled on first use with
  :mod:`torch.utils.cpp_extension` (see :mod:`plasticity_plugins.kernels._extension_build`); if the
  build fails, one warning and the pure-torch implementation from then on.
* CPU tensors with at least ``COMPILE_MIN_NUMEL`` elements: the pure-torch implementation
  compiled with :func:`torch.compile` (inductor; lazily on the first such call, cached for the
  process); if compiling fails, one warning and eager torch from then on. Like the CUDA kernel,
  the compiled function takes the guess and the first Halley step in float32 (float32 vectors
  are twice as wide) and the last step in float64, here on all of ``x >= -1/e`` outside the
  series region (``x > 1e30``, beyond float32's range, through ``exp(log1p(x) - w)``); it
  agrees with the eager implementation to 1e-14 relative. One thread, 10^6 float64 values in
  [-1/e, 50]: 19-20 ms against scipy's 210-230 ms (11-12x; 24-25 ms with three float64
  steps). The first call per dtype pays the compile, once per process: measured 10-30 s on a
  loaded 2-core machine with a cold inductor cache, ~6 s with a warm on-disk cache
  (float32 after float64: 1-14 s), and 53-75 s on a 16-core H100 host (cold; mostly the C++
  compiler and inductor's worker pool). Set ``PLASTICITY_PLUGINS_COMPILE=0`` to never compile,
  e.g. for short scripts.
* everything else: the pure-torch implementation, :func:`lambertw_reference`, which is also the
  test oracle.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import InputError
from ._extension_build import cuda_ext_enabled, load_cuda_ops

__all__ = [
    "COMPILE_MIN_NUMEL",
    "HALLEY_ITERATIONS",
    "lambertw",
    "lambertw_implementation",
    "lambertw_reference",
]

HALLEY_ITERATIONS = 3
"""Halley steps taken after the initial guess (fixed; 3 reach float64 rounding everywhere)."""

COMPILE_MIN_NUMEL = 1 << 15
"""CPU inputs with at least this many elements use the :func:`torch.compile` d implementation."""

_INV_E_HI = 0.36787944117144233  # double(1/e)
_INV_E_LO = -1.2428753672788363e-17  # 1/e - _INV_E_HI
_SERIES_P = 0.05  # branch-point series below this p
_SMALL_X = 0.05  # x - x^2 + 1.5 x^3 as the initial guess for |x| <= this
# W0(-1/e + p^2 / (2e)) = sum_k _MU[k] p^k (Corless et al. 1996, eq. 4.22)
_MU = (
    -1.0,
    1.0,
    -0.3333333333333333333,
    0.1527777777777777778,
    -0.07962962962962962963,
    0.04450231481481481481,
    -0.02598471487360376249,
    0.01563563253233392122,
    -0.009616892024299431707,
    0.006014543252956117861,
    -0.003811298034891999227,
    0.002440877991143982666,
)
# Barry et al. (2000) x < 0 initial guess constants
_N2_A = 10.242640687119285146
_N2_B = 1.9797586132081854940
_N1_A = 0.29289321881345247560
_SQRT2 = 1.4142135623730950488

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# The lowest valid input of each dtype: its rounding of -1/e where that is below -1/e (float16,
# float32, float64: the values between it and -1/e are taken as the branch point), else -1/e.
_LOWER = {
    dtype: min(torch.tensor(-_INV_E_HI, dtype=dtype).item(), -_INV_E_HI) for dtype in _FLOAT_DTYPES
}


def _branch_point_terms(x: Tensor) -> tuple[Tensor, Tensor]:
    """``p = sqrt(2 e (x + 1/e))`` (float64, without cancellation) and the branch-point series."""
    # distance to the branch point, without cancellation: 1/e = _INV_E_HI + _INV_E_LO
    d = torch.clamp_min((x + _INV_E_HI) + _INV_E_LO, 0.0)
    p = torch.sqrt((2.0 * math.e) * d)
    series = p * _MU[11] + _MU[10]
    for coefficient in reversed(_MU[:10]):
        series = series * p + coefficient
    return p, series


def _halley_step(w: Tensor, x_exp_minus_w: Tensor) -> Tensor:
    """One Halley step for ``w e^w = x``, given ``x e^-w``."""
    g = w - x_exp_minus_w  # f / e^w = (w e^w - x) / e^w
    wp1 = w + 1.0
    return w - 2.0 * g * wp1 / (2.0 * wp1 * wp1 - (w + 2.0) * g)


def _barry_guess(p: Tensor) -> Tensor:
    """Barry et al.'s initial guess for ``x < 0`` (error <= 1.3e-4)."""
    n2 = _N2_A + _N2_B * p
    n1 = _N1_A * (_SQRT2 + n2)
    return -1.0 + p * (n2 + p) / (n2 + p + n1 * p)


def _winitzki_guess(lx: Tensor) -> Tensor:
    """Winitzki's initial guess for ``x > 0`` from ``lx = log1p(x)`` (error <= 2.0 %)."""
    return lx * (1.0 - torch.log1p(lx) / (2.0 + lx))


def _special_values(w: Tensor, x: Tensor, p: Tensor, series: Tensor, dtype: torch.dtype) -> Tensor:
    """The series next to the branch point, ``+-0``, ``+inf``, NaN below the branch point; cast
    back."""
    w = torch.where(p < _SERIES_P, series, w)
    w = torch.where(x == 0.0, x, w)
    w = torch.where(x == math.inf, x, w)
    w = w.masked_fill(x < _LOWER.get(dtype, -_INV_E_HI), math.nan)
    return w.to(dtype)


def _w0(x: Tensor) -> Tensor:
    """W0 of a floating tensor, computed in float64, returned in ``x.dtype`` (no checks)."""
    dtype = x.dtype
    x = x.to(torch.float64)
    p, series = _branch_point_terms(x)
    small = x - x * x + 1.5 * x * x * x
    positive = _winitzki_guess(torch.log1p(x))
    w = torch.where(x.abs() <= _SMALL_X, small, torch.where(x > 0.0, positive, _barry_guess(p)))
    for _ in range(HALLEY_ITERATIONS):
        w = _halley_step(w, x * torch.exp(-w))
    return _special_values(w, x, p, series, dtype)


def _w0_mixed(x: Tensor) -> Tensor:
    """:func:`_w0` with the guess and the first Halley step in float32, the last in float64.

    For the compiled CPU path: float32 vectors are twice as wide, and cubic convergence takes the
    float32 stage's <= 1e-5 relative error to float64 rounding in one float64 step (max relative
    difference to scipy on 10^6 values in [-1/e, 50]: 5.1e-15, as for :func:`_w0`). The
    branch-point series and the special values are :func:`_w0`'s.
    """
    dtype = x.dtype
    x = x.to(torch.float64)
    p, series = _branch_point_terms(x)
    # log1p(x) in float64 (x may exceed float32's range); all after it fits in float32
    lx = torch.log1p(x).float()
    x32 = x.float()
    w32 = torch.where(x32 > 0.0, _winitzki_guess(lx), _barry_guess(p.float()))
    # x e^-w: as exp(log1p(x) - w) above 1e30, where x overflows float32 (log1p(x) = ln x there)
    w32 = _halley_step(w32, torch.where(x32 > 1e30, torch.exp(lx - w32), x32 * torch.exp(-w32)))
    w = w32.double()
    w = _halley_step(w, x * torch.exp(-w))
    return _special_values(w, x, p, series, dtype)


def _check_input(x: object) -> None:
    if not isinstance(x, Tensor):
        raise InputError(f"lambertw expects a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise InputError(
            f"lambertw expects a real floating-point tensor (float16, bfloat16, float32 or "
            f"float64), got dtype {x.dtype}; convert it first, e.g. x.double()"
        )


def lambertw_reference(x: Tensor) -> Tensor:
    """W0 by the pure-torch implementation (eager; the fallback of the op and its test oracle).

    Same values as :func:`lambertw` (up to rounding in the last bit where another implementation
    is used), on any device. Computed without autograd: the result never requires grad; use
    :func:`lambertw` for gradients.

    Args:
        x: real floating-point tensor of any shape and device.

    Returns:
        ``W0(x)``, same shape, dtype and device.

    Raises:
        InputError: ``x`` is not a floating-point tensor.

    Example:
        >>> lambertw_reference(torch.tensor([1.0, -math.exp(-1)], dtype=torch.float64))
        tensor([ 0.5671, -1.0000], dtype=torch.float64)
    """
    _check_input(x)
    with torch.no_grad():
        return _w0(x)


# ----------------------------------------------------------------------------------------------
# compiled CPU path

_compile_lock = threading.Lock()
_compiled: Callable[[Tensor], Tensor] | None = None
_compile_failed = False


def _compile_enabled() -> bool:
    flag = os.environ.get("PLASTICITY_PLUGINS_COMPILE", "1").strip().lower()
    return not _compile_failed and flag not in ("0", "false", "no", "off")


def _dispatch_mode_active() -> bool:
    try:
        from torch.utils._python_dispatch import _get_current_dispatch_mode
    except ImportError:  # pragma: no cover - private API moved
        return True
    return _get_current_dispatch_mode() is not None


def _compiled_w0() -> Callable[[Tensor], Tensor]:
    global _compiled
    with _compile_lock:
        if _compiled is None:
            _compiled = torch.compile(_w0_mixed, dynamic=True, fullgraph=True)
        return _compiled


def _use_compiled(x: Tensor) -> bool:
    return (
        x.numel() >= COMPILE_MIN_NUMEL
        and _compile_enabled()
        and not torch.compiler.is_compiling()
        and not _dispatch_mode_active()
    )


def _lambertw_cpu(x: Tensor) -> Tensor:
    global _compile_failed
    if _use_compiled(x):
        try:
            return _compiled_w0()(x.reshape(-1)).view(x.shape)
        except Exception as exc:  # no C++ compiler, unsupported Python, ...: use eager torch
            _compile_failed = True
            warnings.warn(
                f"plasticity_plugins.lambertw: torch.compile failed ({type(exc).__name__}: "
                f"{str(exc).strip()[:300]}); using eager torch from now on (slower). "
                "Set PLASTICITY_PLUGINS_COMPILE=0 to skip compiling.",
                RuntimeWarning,
                stacklevel=2,
            )
    return _w0(x)


# ----------------------------------------------------------------------------------------------
# CUDA path

_CUDA_LIBRARY = "plasticity_plugins_lambertw"
_CUDA_SOURCES = ("lambertw.cu", "lambertw.cpp")


def _cuda_ext_available() -> bool:
    return load_cuda_ops(_CUDA_LIBRARY, _CUDA_SOURCES)


def _lambertw_cuda(x: Tensor) -> Tensor:
    if x.dtype in (torch.float32, torch.float64) and _cuda_ext_available():
        out: Tensor = torch.ops.plasticity_plugins_cuda.lambertw(x)
        return out
    return _w0(x)


# ----------------------------------------------------------------------------------------------
# the op


@torch.library.custom_op("plasticity_plugins::lambertw", mutates_args=())
def _lambertw_op(x: Tensor) -> Tensor:
    """Default implementation (any device without a dedicated kernel): eager torch."""
    return _w0(x)


_lambertw_op.register_kernel("cpu")(_lambertw_cpu)
_lambertw_op.register_kernel("cuda")(_lambertw_cuda)


@_lambertw_op.register_fake
def _lambertw_fake(x: Tensor) -> Tensor:
    return torch.empty_like(x)


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: Tensor) -> None:
    ctx.save_for_backward(output)


def _backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
    (w,) = ctx.saved_tensors  # type: ignore[attr-defined]
    # dW/dx = W / (x (1 + W)) = exp(-W) / (1 + W): 1 at x = 0, inf at the branch point
    return grad * torch.exp(-w) / (1.0 + w)


_lambertw_op.register_autograd(_backward, setup_context=_setup_context)


def lambertw(x: Tensor) -> Tensor:
    """Lambert W function, principal branch: the ``w >= -1`` with ``w * exp(w) = x``.

    Differentiable: ``dW/dx = W / (x (1 + W)) = exp(-W) / (1 + W)`` (``1`` at ``x = 0``).
    Computed in float64 for every input dtype and cast back. See the module docstring for the
    algorithm (Halley's method, as in the Fast & Deep reference kernel) and the implementations
    (CUDA kernel, compiled CPU loop, eager torch).

    Args:
        x: real floating-point tensor (float16, bfloat16, float32 or float64) of any shape
            (0-d and empty included) on any device.

    Returns:
        ``W0(x)``, same shape, dtype and device. NaN for ``x`` below ``-1/e`` (as rounded to
        ``x.dtype``; the Fast & Deep rule reads this as "no spike"), ``-1`` at ``-1/e``,
        ``+inf`` at ``+inf``, NaN for NaN and ``-inf``.

    Raises:
        InputError: ``x`` is not a tensor, or has an integer, boolean or complex dtype.

    Example:
        >>> x = torch.tensor([0.0, 1.0, math.e, -math.exp(-1), -1.0], requires_grad=True)
        >>> w = lambertw(x)
        >>> w.detach()
        tensor([ 0.0000,  0.5671,  1.0000, -1.0000,     nan])
        >>> torch.allclose(w[:3] * torch.exp(w[:3]), x[:3])
        True
        >>> w[:3].sum().backward()
        >>> x.grad[:3]  # 1 at x = 0, then W / (x (1 + W))
        tensor([1.0000, 0.3619, 0.1839])
    """
    _check_input(x)
    return _lambertw_op(x)


def lambertw_implementation(x: Tensor) -> str:
    """Name of the implementation a call of :func:`lambertw` on ``x`` would use now.

    One of ``"cuda-extension"``, ``"torch-compiled"``, ``"torch-eager"``. On a CUDA tensor this
    builds the CUDA library if that has not been tried yet (it is what the call would do).

    Example:
        >>> lambertw_implementation(torch.zeros(3))
        'torch-eager'
    """
    _check_input(x)
    if x.device.type == "cuda":
        if (
            x.dtype in (torch.float32, torch.float64)
            and cuda_ext_enabled()
            and _cuda_ext_available()
        ):
            return "cuda-extension"
        return "torch-eager"
    if x.device.type == "cpu" and _use_compiled(x):
        return "torch-compiled"
    return "torch-eager"
