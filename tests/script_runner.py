"""Run the repository's example and benchmark scripts from tests (one helper for every test file).

* :func:`run_script`: a script in a subprocess, as a user runs it (1 thread, warnings off);
* :func:`import_script`: a script imported as a module, to call its functions directly.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "import_script", "run_script"]


def run_script(script: str, *args: str, timeout: float = 240) -> str:
    """Run ``script`` (a path relative to the repository root) with ``args``; return its stdout.

    Fails the calling test with the end of stderr when the script exits non-zero.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def import_script(folder: str, name: str) -> ModuleType:
    """Import ``ROOT/folder/name.py`` as module ``name`` (its folder on ``sys.path`` meanwhile)."""
    path = str(ROOT / folder)
    sys.path.insert(0, path)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(path)
