"""Lambert W kernel (Fast & Deep, SPECS.md §3 check 4) against scipy, mpmath and its own oracle."""

from __future__ import annotations

import doctest
import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import plasticity_plugins.kernels._extension_build as cuda_build
import plasticity_plugins.kernels.lambertw as lw
from plasticity_plugins.errors import InputError
from plasticity_plugins.kernels.lambertw import (
    lambertw,
    lambertw_implementation,
    lambertw_reference,
)

special = pytest.importorskip("scipy.special")

INV_E = 0.36787944117144233  # double(1/e); the true 1/e is 1.24e-17 smaller


def _grid() -> np.ndarray:
    """[-1/e, 1e6]: log-spaced both signs, plus offsets 1e-14 .. 0.3 above the branch point.

    Offsets closer than 1e-14 are left to the mpmath test: scipy's own error there exceeds 1e-9
    (2.9e-9 one ulp above -1/e, measured against mpmath at 50 digits).
    """
    return np.unique(
        np.concatenate(
            [
                np.logspace(-300, 6, 1500),
                -np.logspace(-300, math.log10(0.3), 600),
                -INV_E + np.logspace(-14, math.log10(0.3), 1200),
                [0.0, 1e6, -0.3, -0.36, -0.367],
            ]
        )
    )


def _scipy_w0(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = special.lambertw(x.astype(np.float64), k=0).real
    return out


# lambertw() on these small inputs runs the eager oracle; _w0_mixed is the function the compiled
# CPU path compiles (float32 guess and first step), run eagerly here
IMPLEMENTATIONS = pytest.mark.parametrize(
    "w0", [lambertw, lw._w0_mixed], ids=["lambertw", "mixed-precision"]
)


@IMPLEMENTATIONS
def test_float64_matches_scipy(w0):
    x = _grid()
    ours = w0(torch.from_numpy(x)).numpy()
    ref = _scipy_w0(x)
    far = x >= -INV_E + 1e-8
    rel = np.abs(ours - ref)[far] / np.maximum(np.abs(ref[far]), np.finfo(np.float64).tiny)
    near = np.abs(ours - ref)[~far]
    assert rel.max() <= 1e-12, (rel.max(), x[far][rel.argmax()])
    assert near.max() <= 1e-9, (near.max(), x[~far][near.argmax()])


def test_float64_near_branch_point_matches_mpmath():
    """Down to one ulp above -1/e, where scipy itself is off by up to 3e-9.

    Within 1e-4 of -1/e the branch-point series gives W to about one ulp; scipy's Halley
    iteration there is limited by the conditioning of w e^w - x.
    """
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    offsets = np.concatenate([np.logspace(-16, -4, 100), [5.551115123125783e-17]])
    x = np.concatenate([[np.nextafter(-INV_E, 0.0)], -INV_E + offsets])
    exact = np.array([float(mpmath.lambertw(mpmath.mpf(float(v))).real) for v in x])
    ours = lambertw(torch.from_numpy(x)).numpy()
    assert np.abs(ours - exact).max() <= 2.5e-16


@IMPLEMENTATIONS
def test_float32_matches_scipy(w0):
    x32 = torch.from_numpy(_grid()).float()
    x32 = x32[x32.double() > -1 / math.e]  # the float32 -1/e itself lies below -1/e: see below
    ours = w0(x32).double().numpy()
    x = x32.double().numpy()
    ref = _scipy_w0(x)
    far = x >= -1 / math.e + 1e-4
    big = far & (np.abs(ref) > 1e-37)  # float32 subnormals hold fewer digits
    rel = np.abs(ours - ref)[big] / np.abs(ref[big])
    assert rel.max() <= 1e-6, (rel.max(), x[big][rel.argmax()])
    assert np.abs(ours - ref)[~far].max() <= 1e-3
    # computed in float64 and rounded: far better than the tolerances
    assert rel.max() <= 1.2e-7
    assert np.abs(ours - ref)[~far].max() <= 1e-7


@IMPLEMENTATIONS
def test_special_values(dtype, w0):
    x = torch.tensor(
        [-1 / math.e, math.inf, math.nan, -math.inf, -0.5, -0.37, 0.0, math.e, -0.0], dtype=dtype
    )
    w = w0(x)
    assert w.dtype == dtype
    assert w[0].item() == -1.0  # the dtype's rounding of -1/e is the branch point
    assert w[1].item() == math.inf
    assert torch.isnan(w[2:6]).all()  # NaN, -inf, below -1/e
    assert w[6].item() == 0.0
    assert w[7].item() == pytest.approx(1.0, rel=1e-7)
    assert w[8].item() == 0.0 and math.copysign(1.0, w[8].item()) == -1.0


def test_branch_point_rounding_float64():
    assert lambertw(torch.tensor(-INV_E, dtype=torch.float64)).item() == -1.0
    assert math.isnan(lambertw(torch.tensor(np.nextafter(-INV_E, -1.0))).item())
    w = lambertw(torch.tensor(np.nextafter(-INV_E, 0.0))).item()
    assert -1.0 < w < -1.0 + 2e-8


@IMPLEMENTATIONS
def test_tiny_arguments(w0):
    for value in (1e-30, -1e-30, 1e-300, -1e-300, 5e-324):
        w = w0(torch.tensor(value, dtype=torch.float64)).item()
        assert w == pytest.approx(value - value * value, rel=1e-15, abs=0.0)
    for value in (1e-30, -1e-30, 1e-10, -1e-10):
        x = torch.tensor(value, dtype=torch.float32)
        expected = float(x.double()) * (1 - float(x.double()))
        assert w0(x).item() == pytest.approx(expected, rel=1e-6, abs=0.0)


@IMPLEMENTATIONS
def test_largest_double(w0):
    x = torch.tensor(
        [1e6, 1e29, 1e31, 1e38, 1e39, 1e100, 1e300, np.finfo(np.float64).max], dtype=torch.float64
    )
    w = w0(x)
    assert torch.isfinite(w).all()
    # w e^w = x, checked in logarithms
    assert torch.allclose(w + torch.log(w), torch.log(x), rtol=1e-15, atol=0)


@IMPLEMENTATIONS
def test_satisfies_defining_equation(w0):
    x = torch.linspace(-0.36, 50.0, 1001, dtype=torch.float64)
    w = w0(x)
    assert torch.allclose(w * torch.exp(w), x, rtol=1e-14, atol=1e-15)
    assert (w >= -1).all()


def test_shapes_and_layouts(dtype):
    scalar = lambertw(torch.tensor(1.0, dtype=dtype))
    assert scalar.shape == () and scalar.dtype == dtype
    empty = lambertw(torch.empty(0, 3, dtype=dtype))
    assert empty.shape == (0, 3)
    x = torch.rand(4, 5, 6, dtype=dtype) * 10 - 0.3
    w = lambertw(x)
    assert w.shape == (4, 5, 6)
    torch.testing.assert_close(w, lambertw_reference(x), rtol=0, atol=0)
    transposed = x.transpose(0, 2)  # non-contiguous
    torch.testing.assert_close(lambertw(transposed), w.transpose(0, 2), rtol=0, atol=0)


def test_half_precision_dtypes():
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.tensor([0.0, 1.0, 10.0], dtype=dtype)
        w = lambertw(x)
        assert w.dtype == dtype
        ref = lambertw(x.double()).to(dtype)
        torch.testing.assert_close(w, ref, rtol=0, atol=0)


@pytest.mark.parametrize(
    "bad", [torch.arange(3), torch.tensor([True]), torch.ones(2, dtype=torch.complex64), 1.0]
)
def test_rejects_non_real_floating_input(bad):
    with pytest.raises(InputError, match="lambertw"):
        lambertw(bad)
    with pytest.raises(InputError):
        lambertw_reference(bad)


def test_integer_error_is_value_error():
    with pytest.raises(ValueError, match="float"):
        lambertw(torch.tensor([1, 2], dtype=torch.int32))


def test_gradcheck():
    x = torch.tensor(
        [-0.36, -0.3, -0.1, -1e-3, 0.0, 1e-3, 0.5, 1.0, 10.0, 50.0],
        dtype=torch.float64,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(lambertw, (x,), eps=1e-7, atol=1e-9, rtol=1e-6)
    assert torch.autograd.gradgradcheck(lambertw, (x,), eps=1e-7, atol=1e-8, rtol=1e-5)


def test_gradient_values():
    x = torch.tensor(
        [0.0, 1.0, math.e, 1e3, -0.2, -1 / math.e, math.inf], dtype=torch.float64
    ).requires_grad_()
    w = lambertw(x)
    (grad,) = torch.autograd.grad(w.sum(), x)
    assert grad[0].item() == 1.0  # dW/dx = 1 at x = 0
    wd, xd = w.detach()[1:5], x.detach()[1:5]
    torch.testing.assert_close(grad[1:5], wd / (xd * (1 + wd)), rtol=1e-14, atol=0)
    # large x, where finite differences are too noisy for gradcheck: W(x (1 + h)) - W(x)
    big = torch.tensor([1e3, 1e6, 1e100], dtype=torch.float64, requires_grad=True)
    (gbig,) = torch.autograd.grad(lambertw(big).sum(), big)
    h = 1e-6
    fd = lambertw_reference(big.detach() * (1 + h)) - lambertw_reference(big.detach() * (1 - h))
    torch.testing.assert_close(gbig, fd / (2 * h * big.detach()), rtol=1e-8, atol=0)
    assert grad[5].item() == math.inf  # the derivative diverges at the branch point
    assert grad[6].item() == 0.0


def test_gradient_float32():
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    lambertw(x).sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    w = lambertw_reference(x.detach().double())
    torch.testing.assert_close(x.grad.double(), torch.exp(-w) / (1 + w), rtol=1e-6, atol=0)


def test_reference_has_no_graph():
    x = torch.tensor([1.0], requires_grad=True)
    assert not lambertw_reference(x).requires_grad


def test_opcheck():
    for x in (
        torch.tensor([-0.3, 0.0, 0.7, 20.0], dtype=torch.float64, requires_grad=True),
        torch.rand(3, 4, dtype=torch.float32),
    ):
        result = torch.library.opcheck(lw._lambertw_op, (x,))
        assert all(v == "SUCCESS" for v in result.values()), result


def test_works_inside_torch_compile_graph():
    """The op is opaque to torch.compile (its fake implementation gives the shape)."""
    torch._dynamo.reset()
    fn = torch.compile(lambda t: lambertw(t) * 2.0, backend="eager", fullgraph=True)
    x = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(fn(x), 2.0 * lambertw_reference(x), rtol=0, atol=0)


def test_implementation_choice(monkeypatch):
    small = torch.zeros(3)
    big = torch.zeros(lw.COMPILE_MIN_NUMEL)
    assert lambertw_implementation(small) == "torch-eager"
    monkeypatch.setenv("PLASTICITY_PLUGINS_COMPILE", "0")
    assert lambertw_implementation(big) == "torch-eager"
    monkeypatch.setenv("PLASTICITY_PLUGINS_COMPILE", "1")
    assert lambertw_implementation(big) == "torch-compiled"


def test_compile_failure_falls_back_with_one_warning(monkeypatch):
    def broken() -> object:
        def fail(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(lw, "_compiled_w0", broken)
    monkeypatch.setattr(lw, "_compile_failed", False)
    monkeypatch.setenv("PLASTICITY_PLUGINS_COMPILE", "1")
    x = torch.rand(lw.COMPILE_MIN_NUMEL, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        first = lambertw(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = lambertw(x)
    assert lambertw_implementation(x) == "torch-eager"
    torch.testing.assert_close(first, lambertw_reference(x), rtol=0, atol=0)
    torch.testing.assert_close(second, first, rtol=0, atol=0)


def _compile_test_input() -> torch.Tensor:
    x = torch.from_numpy(np.resize(_grid(), lw.COMPILE_MIN_NUMEL))
    return torch.cat([x, torch.tensor([math.inf, math.nan, -1.0, -INV_E, 0.0, 1e300])])


def test_cpu_kernel_traces_as_one_graph():
    """The function behind the compiled CPU path traces into one graph (a cheap check).

    The inductor compile itself is exercised by the ``slow`` test below (10-60 s cold).
    """
    torch._dynamo.reset()
    traced = torch.compile(lw._w0_mixed, backend="eager", dynamic=True, fullgraph=True)
    x = _compile_test_input()
    for dtype in (torch.float64, torch.float32):
        got = traced(x.to(dtype))
        torch.testing.assert_close(got, lw._w0_mixed(x.to(dtype)), rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(
            got, lambertw_reference(x.to(dtype)), rtol=1e-14, atol=0, equal_nan=True
        )
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_cpu_path_matches_eager(monkeypatch):
    """The torch.compile'd loop (the CPU path for large inputs) against the eager oracle."""
    monkeypatch.setenv("PLASTICITY_PLUGINS_COMPILE", "1")
    monkeypatch.setattr(lw, "_compile_failed", False)
    x = _compile_test_input()
    assert lambertw_implementation(x) == "torch-compiled"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a compile failure would warn
        w = lambertw(x)
    torch.testing.assert_close(w, lambertw_reference(x), rtol=1e-14, atol=0, equal_nan=True)


def test_doctests():
    result = doctest.testmod(lw, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# CUDA


def test_cuda_sources_are_package_resources():
    for name in ("lambertw.cu", "lambertw.cpp", "lambertw.h"):
        assert cuda_build.cuda_source(name).is_file()
    with pytest.raises(FileNotFoundError):
        cuda_build.cuda_source("missing.cu")


@pytest.mark.cuda_build
@pytest.mark.skipif(cuda_build.nvcc_path() is None, reason="needs nvcc")
def test_cuda_source_compiles_and_links(tmp_path):
    """Compile + link cuda/lambertw.{cu,cpp} into a loadable op library (no GPU needed).

    Runs in a subprocess: the library registers the namespace plasticity_plugins_cuda, which the
    op's own copy of the library would register again in this process on a GPU machine.
    """
    script = textwrap.dedent(
        f"""
        import torch
        from plasticity_plugins.kernels._extension_build import build_cuda_library
        path = build_cuda_library(
            "plasticity_plugins_lambertw_buildtest",
            ["lambertw.cu", "lambertw.cpp"],
            build_directory={str(tmp_path)!r},
        )
        print(path)
        print(torch.ops.plasticity_plugins_cuda.lambertw.default._schema)
        """
    )
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "plasticity_plugins_cuda::lambertw(Tensor x) -> Tensor" in proc.stdout


@pytest.mark.needs_cuda
def test_cuda_matches_torch(dtype):
    if cuda_build.nvcc_path() is None:
        pytest.skip("needs nvcc to build the CUDA kernel")
    x = torch.from_numpy(_grid()).to(dtype)
    specials = torch.tensor([math.inf, math.nan, -math.inf, -1.0, -1 / math.e, 0.0], dtype=dtype)
    x = torch.cat([x, specials, torch.rand(10_000, dtype=dtype) * 50 - 1 / math.e])
    xc = x.cuda()
    assert lambertw_implementation(xc) == "cuda-extension"
    w = lambertw(xc)
    assert w.device == xc.device and w.dtype == dtype
    ref = lambertw_reference(x)
    # both within ~2e-15 of the exact value (the GPU contracts to FMAs, other exp/log)
    rtol = 1e-14 if dtype == torch.float64 else 1.2e-7
    torch.testing.assert_close(w.cpu(), ref, rtol=rtol, atol=1e-300, equal_nan=True)
    # layouts, shapes, gradient
    cube = xc[: 4 * 5 * 6].reshape(4, 5, 6).transpose(0, 2)
    torch.testing.assert_close(
        lambertw(cube), lambertw(cube.contiguous()), rtol=0, atol=0, equal_nan=True
    )
    assert lambertw(torch.empty(0, device="cuda", dtype=dtype)).shape == (0,)
    g = torch.tensor([0.0, 1.0, 5.0], device="cuda", dtype=dtype, requires_grad=True)
    lambertw(g).sum().backward()
    assert g.grad is not None
    torch.testing.assert_close(g.grad.cpu()[0], torch.tensor(1.0, dtype=dtype))
