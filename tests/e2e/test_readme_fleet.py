"""The etcd fleet sequences of README.md ("A fleet") and docs/fleet.md ("Running one") run as
written: one bash, the block as it stands, in an empty directory, on the ports it names.

Those are etcd's and canaryserve's well-known ports (2379, 8001, ...), what a user types; so
the test needs them free. On a developer's machine where one is taken (a `make serve`, an
etcd) it skips saying which; in CI (CI=true) that fails instead, as a missing etcd does.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fleet import require_etcd
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def etcd_block(path: Path, heading: str) -> str:
    """The first sh block after `heading` that starts an etcd."""
    text = path.read_text(encoding="utf-8")
    start = text.index(heading)
    for block in re.findall(r"```sh\n(.*?)```", text[start:], flags=re.S):
        if re.search(r"^etcd ", block, flags=re.M):
            return str(block)
    raise AssertionError(f"{path.name}: no etcd sequence after {heading!r}")


SEQUENCES = {
    "readme": etcd_block(ROOT / "README.md", "\n## A fleet\n"),
    "fleet-doc": etcd_block(ROOT / "docs" / "fleet.md", "\n## Running one\n"),
}


def ports_named(block: str) -> set[int]:
    """Every port the sequence listens on: etcd's client and peer defaults, and each flag's."""
    named = {2379, 2380}
    named |= {int(p) for p in re.findall(r"--(?:metrics-)?port (\d+)", block)}
    return named


def taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_the_sequences_are_the_ones_this_test_runs() -> None:
    for block in SEQUENCES.values():
        assert "rollout start classifier 3 --weight 10" in block
        assert re.search(r"^canaryserve serve --store etcd://127\.0\.0\.1:2379/", block, re.M)
        assert {8001, 8011} <= ports_named(block)


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_the_fleet_sequence_runs_as_written(name: str, tmp_path: Path) -> None:
    require_etcd()
    block = SEQUENCES[name]
    busy = sorted(p for p in ports_named(block) if taken(p))
    if busy:
        message = f"the {name} sequence needs 127.0.0.1 ports {busy}, which are taken here"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYSERVE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # canaryserve, as after `make serve`
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        shell = subprocess.Popen(
            ["bash", "-e", "-c", block],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # the background etcd and servers: one group to stop
        )
    try:
        code: int | None = shell.wait(timeout=180)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        drained = stop_group(shell)  # etcd and the servers the sequence left running
    output = out.read_text()
    log = err.read_text()
    assert code == 0, f"exit {code}\n{output}\n{log}"
    assert drained, log
    # The rollout that `rollout start` printed through replica 1 is what replica 2 reports.
    assert len(re.findall(r"^classifier .* candidate 3 canary 10% ", output, re.M)) >= 2, output
    assert "Traceback" not in log


def stop_group(shell: subprocess.Popen[bytes]) -> bool:
    """SIGTERM the shell's process group (the servers drain, etcd stops); whether every
    process in it was gone within the deadline (else SIGKILL)."""

    def gone() -> bool:
        shell.poll()  # reap the shell itself, if it is still there
        try:
            os.killpg(shell.pid, 0)
        except ProcessLookupError:
            return True
        return False

    os.killpg(shell.pid, signal.SIGTERM)
    try:
        wait_for(gone, 60)
        return True
    except AssertionError:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(10)
        return False
