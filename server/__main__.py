"""The server's entry point: `python -m server [flags]`, which `canaryserve serve` runs.

Flags override the TOML config file (`--config`); `CANARYSERVE_ADMIN_TOKEN`, when set, adds
an admin token named "env". SIGTERM and SIGINT drain the server: calls in flight get
`grace_seconds` to finish, then the process exits 0.

`--processes N` (N > 1) makes this process a supervisor of N serving processes on one port
(SO_REUSEPORT): the first starts alone (it creates the state store and the admin token), the
others then together; SIGTERM/SIGINT go to every child; if one dies, the rest are stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from protos.wire import DEFAULT_PORT, DEFAULT_STATE_DIR
from server.app import App
from server.config import (
    Config,
    ConfigError,
    load_config,
    with_env_admin_token,
    with_env_outcome_token,
)
from server.telemetry.logs import LOG_FORMATS, configure_logging

__all__ = ["build_parser", "config_from", "main", "serve"]

log = logging.getLogger("canaryserve")

#: Signals that drain and stop the server.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canaryserve serve",
        description="Run the canaryserve server (default: the bundled models). "
        "Also runs as `python -m server`.",
    )
    parser.add_argument("--models", type=Path, help="model repository directory")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help=f"gRPC port (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument(
        "--state-dir", type=Path, help=f"durable state (default {DEFAULT_STATE_DIR}/)"
    )
    parser.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics port (default 8002; -1: off)"
    )
    parser.add_argument(
        "--store", help="etcd://HOST:PORT[,HOST:PORT...]/PREFIX (default: SQLite in the state dir)"
    )
    parser.add_argument(
        "--processes", type=int, help="serving processes sharing the port (default 1)"
    )
    parser.add_argument(
        "--poll-models",
        type=float,
        metavar="SECONDS",
        help="load new model/version directories every SECONDS (default 0: off)",
    )
    parser.add_argument("--config", type=Path, help="TOML config file (see docs/config.md)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--log-format",
        default="auto",
        choices=LOG_FORMATS,
        help="json: one JSON object per line; text: for people; auto (default): text when"
        " stderr is a terminal, else json",
    )
    return parser


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """Defaults, then the config file, then the flags; plus the admin token in `environ`."""
    overrides = {
        "models_dir": args.models,
        "host": args.host,
        "port": args.port,
        "state_dir": args.state_dir,
        "metrics_port": args.metrics_port,
        "store": args.store,
        "processes": args.processes,
        "poll_models_seconds": args.poll_models,
        # A supervisor's child shares the port with its siblings.
        "reuse_port": True if environ.get(PROCESS_INDEX_ENV) else None,
    }
    config = with_env_admin_token(load_config(args.config, overrides), environ)
    return with_env_outcome_token(config, environ)


def serve(config: Config) -> int:
    """Start the server, wait for SIGTERM or SIGINT, drain and stop it (main thread only)."""
    # The signal handlers do nothing themselves: Python's C-level handler writes the signal
    # number to the wakeup pipe, from whichever thread the signal lands on, and the main
    # thread, blocked reading that pipe, does the stopping. Stopping inside a handler (which
    # interrupts the main thread between two bytecodes) can deadlock against gRPC, and so can
    # setting a threading.Event there (its lock is not reentrant).
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    previous = {s: signal.signal(s, _noted) for s in STOP_SIGNALS}
    try:
        app = App(config)
        try:
            app.start()
        except ConfigError:
            app.stop(0)
            raise
        _report_ready()
        signum = _wait_for_stop_signal(wake_r)
        log.info(
            "received %s; draining (grace %.1fs)",
            signal.Signals(signum).name,
            config.grace_seconds,
        )
        app.stop()
    finally:
        signal.set_wakeup_fd(previous_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(wake_r)
        os.close(wake_w)
    log.info("stopped")
    return 0


#: Set by a supervisor in its children: a pipe to write one byte to once serving.
READY_FD_ENV = "CANARYSERVE_READY_FD"
#: The children of a supervisor: their index (metrics port = metrics_port + index).
PROCESS_INDEX_ENV = "CANARYSERVE_PROCESS_INDEX"


def _report_ready() -> None:
    fd = os.environ.pop(READY_FD_ENV, "")
    if fd:
        with contextlib.suppress(OSError):
            os.write(int(fd), b"1")
            os.close(int(fd))


def supervise(config: Config, argv: Sequence[str]) -> int:
    """Run `config.processes` children of `python -m server argv` on one port."""
    sock = None
    port = config.port
    if port == 0:
        # Pick the port once for every child; this socket (bound, never listening) keeps it.
        sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, 0))
        port = sock.getsockname()[1]
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    previous = {s: signal.signal(s, _noted) for s in (*STOP_SIGNALS, signal.SIGCHLD)}
    children: list[subprocess.Popen[bytes]] = []
    try:
        pending: list[int] = []
        for index in range(config.processes):
            ready_r, ready_w = os.pipe()
            env = {
                **os.environ,
                READY_FD_ENV: str(ready_w),
                PROCESS_INDEX_ENV: str(index),
            }
            child_args = [*argv, "--processes", "1", "--port", str(port)]
            if config.metrics_port > 0:
                child_args += ["--metrics-port", str(config.metrics_port + index)]
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "server", *child_args], env=env, pass_fds=(ready_w,)
                )
            )
            os.close(ready_w)
            pending.append(ready_r)
            if index == 0:  # the first alone (it creates the store and the token)
                _await_ready(pending)
        _await_ready(pending)  # then the others, started together
        log.info("%d serving processes on %s:%d", config.processes, config.host, port)
        print(f"canaryserve: {config.processes} processes on {config.host}:{port}", flush=True)
        while True:
            signum = _wait_for_stop_signal(wake_r, (*STOP_SIGNALS, signal.SIGCHLD))
            if signum != signal.SIGCHLD or any(c.poll() is not None for c in children):
                break
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        codes = [child.wait() for child in children]
        signal.set_wakeup_fd(previous_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(wake_r)
        os.close(wake_w)
        if sock is not None:
            sock.close()
    return max(codes, default=0)


def _await_ready(fds: list[int]) -> None:
    """Wait for one byte on each pipe (a child serving); closes them all."""
    try:
        for fd in fds:
            if not os.read(fd, 1):
                raise ConfigError("a serving process exited before it was ready")
    finally:
        for fd in fds:
            os.close(fd)
        fds.clear()


def _noted(_signum: int, _frame: FrameType | None) -> None:
    """Handler of the stop signals: the wakeup pipe already carries the signal number."""


def _wait_for_stop_signal(wake_r: int, signals: Sequence[int] = STOP_SIGNALS) -> int:
    while True:
        for signum in os.read(wake_r, 64):  # blocks; retried after EINTR (PEP 475)
            if signum in signals:
                return signum


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        config = config_from(args, os.environ)
        if config.processes > 1:
            return supervise(config, list(argv if argv is not None else sys.argv[1:]))
        return serve(config)
    except ConfigError as exc:
        print(f"canaryserve: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
