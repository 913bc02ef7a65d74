"""The README stays true: its examples run and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

_HEADING = re.compile(r"^#+ (.+)$", re.M)
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _block_id(heading: str) -> str:
    """A test id from a heading: its text before any " — ", without markup."""
    title = heading.split(" — ")[0]
    return re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-") or "block"


def _python_blocks() -> list[tuple[str, int, str]]:
    """``(id, line number, code)`` of every ```python block, named after its nearest heading."""
    blocks, seen = [], {}
    for match in _PYTHON_BLOCK.finditer(README):
        headings = _HEADING.findall(README, 0, match.start())
        name = _block_id(headings[-1]) if headings else "intro"
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}-{seen[name]}"
        line = README.count("\n", 0, match.start(1)) + 1
        blocks.append((name, line, match.group(1)))
    return blocks


BLOCKS = _python_blocks()


def _run(line: int, code: str) -> dict:
    """Execute ``code`` in a fresh namespace; tracebacks point at README.md's own lines."""
    namespace: dict = {"__name__": "__readme__"}
    exec(compile("\n" * (line - 1) + code, str(ROOT / "README.md"), "exec"), namespace)
    return namespace


def test_readme_example_runs_and_learns():
    _, line, code = BLOCKS[0]
    namespace = _run(line, code)
    net = namespace["net"]
    assert not namespace["plasticity_plugins"].is_attached(net)
    assert torch.isfinite(net[0].weight).all()


@pytest.mark.parametrize(("line", "code"), [b[1:] for b in BLOCKS], ids=[b[0] for b in BLOCKS])
def test_every_python_block_runs(line, code):
    namespace = _run(line, code)
    for name, value in namespace.items():
        if isinstance(value, torch.nn.Module):  # whatever was trained stayed finite
            for param in value.parameters():
                assert torch.isfinite(param).all(), f"{name}: non-finite parameters"


def test_every_rule_and_framework_has_a_snippet():
    rules = README[README.index("\n## Rules\n") : README.index("\n## Compare rules")]
    code = "\n".join(c for _, _, c in BLOCKS if c in rules)
    for used in (
        "STDP(",
        "TripletSTDP(",
        "TripletSTDP.diehl_cook(",
        "DiehlCook(",
        "DiehlCook.assign_labels(",
        "DiehlCook.predict(",
        "MozafariSTDP(",
        "RSTDP(",
        "MSTDP(",
        "MSTDPET(",
        "STLLR.published(",
        "DECOLLE(",
        "FirstSpikeNetwork(",
        "fast_and_deep_loss(",
        "lambertw(",
        "snntorch as snn",
        "from spikingjelly.activation_based import",
        "norse.torch as norse",
    ):
        assert used in code, f"no README snippet in ## Rules uses {used}"


def test_quick_start_has_exactly_the_two_commands_and_ci_runs_the_test_one():
    commands = re.findall(r"^    (python3 -m venv .*)$", README, re.M)
    assert len(commands) == 2
    main_job, tests = commands
    assert main_job.endswith("plasticity-plugins compare --quick")
    assert tests.endswith(".venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'eval "$test_command"' in ci and "python3 -m venv .venv && .*pytest" in ci
