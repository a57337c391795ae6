"""The server's entry point: `python -m server [flags]`, which `canaryserve serve` runs.

Flags override the TOML config file (`--config`); `CANARYSERVE_ADMIN_TOKEN`, when set, adds
an admin token named "env". SIGTERM and SIGINT drain the server: calls in flight get
`grace_seconds` to finish, then the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from protos.wire import DEFAULT_PORT, DEFAULT_STATE_DIR
from server.app import App
from server.config import Config, ConfigError, load_config, with_env_admin_token

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
    parser.add_argument("--config", type=Path, help="TOML config file (see docs/config.md)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """Defaults, then the config file, then the flags; plus the admin token in `environ`."""
    overrides = {
        "models_dir": args.models,
        "host": args.host,
        "port": args.port,
        "state_dir": args.state_dir,
        "metrics_port": args.metrics_port,
    }
    return with_env_admin_token(load_config(args.config, overrides), environ)


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


def _noted(_signum: int, _frame: FrameType | None) -> None:
    """Handler of the stop signals: the wakeup pipe already carries the signal number."""


def _wait_for_stop_signal(wake_r: int) -> int:
    while True:
        for signum in os.read(wake_r, 64):  # blocks; retried after EINTR (PEP 475)
            if signum in STOP_SIGNALS:
                return signum


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return serve(config_from(args, os.environ))
    except ConfigError as exc:
        print(f"canaryserve: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
