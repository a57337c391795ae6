"""Every README sequence runs as written, top to bottom, against a fresh `canaryserve serve`.

The server runs exactly as `make serve` starts it (the bundled models, no config, a fresh
state directory), except that it listens on free ports; the commands reach it through
CANARYSERVE_TARGET and find the generated admin token in `.canaryserve/` as a user would.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CANARYSERVE = Path(sys.executable).parent / "canaryserve"
DEFAULT_TARGET = "127.0.0.1:8001"


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


USE_IT = section("Use it")
COMMANDS = [line for block in blocks(USE_IT, "sh") for line in block.splitlines() if line.strip()]
PYTHON = blocks(USE_IT, "python")


def test_the_readme_has_the_sequences_this_test_runs() -> None:
    assert len(COMMANDS) >= 10 and len(PYTHON) >= 2
    assert all(line.startswith(".venv/bin/canaryserve ") for line in COMMANDS)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A fresh `canaryserve serve` in an empty directory; yields (directory, target)."""
    home = tmp_path_factory.mktemp("readme")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    with subprocess.Popen(
        [str(CANARYSERVE), "serve", "--port", "0", "--metrics-port", "0"],
        cwd=home,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as server:
        guard = threading.Timer(120, server.kill)  # a server that never starts fails, not hangs
        guard.daemon = True
        guard.start()
        assert server.stderr is not None
        target = None
        for line in server.stderr:
            found = re.search(r"listening on (\S+:\d+)", line)
            if found:
                target = found.group(1)
                break
        guard.cancel()
        assert target is not None, "the server exited before it listened"
        drain = threading.Thread(target=server.stderr.read, daemon=True)
        drain.start()  # keep the pipe from filling up while the test runs
        try:
            yield home, target
        finally:
            server.terminate()
            assert server.wait(timeout=30) == 0


def test_use_it_then_shadow_first_then_the_python_clients(served: tuple[Path, str]) -> None:
    home, target = served
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    env["CANARYSERVE_TARGET"] = target
    for line in COMMANDS:
        argv = shlex.split(line, comments=True)
        argv[0] = str(CANARYSERVE)  # the README's .venv/bin/canaryserve
        done = subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    for code in PYTHON:
        assert DEFAULT_TARGET in code
        done = subprocess.run(
            [sys.executable, "-c", code.replace(DEFAULT_TARGET, target)],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{code}\n{done.stderr}"
        assert "scores" in code and done.stdout.strip()
