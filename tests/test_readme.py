"""The README stays true: its example runs and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_example_runs_and_learns():
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block is not None
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    net = namespace["net"]
    assert not namespace["plasticity_plugins"].is_attached(net)
    assert torch.isfinite(net[0].weight).all()


def test_quick_start_has_exactly_the_two_commands_and_ci_runs_the_test_one():
    commands = re.findall(r"^    (python3 -m venv .*)$", README, re.M)
    assert len(commands) == 2
    main_job, tests = commands
    assert main_job.endswith("plasticity-plugins compare --quick")
    assert tests.endswith(".venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'eval "$test_command"' in ci and "python3 -m venv .venv && .*pytest" in ci
