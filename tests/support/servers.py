"""Real servers for e2e and interop tests: a copy of the bundled models, a server on port 0.

server.app is imported when a server is started, not before, so that unit tests can import
this module (for `make_repository`) without pulling in the gRPC edge.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from server.config import bundled_models_dir, load_config

if TYPE_CHECKING:
    from server.app import App

__all__ = ["make_repository", "start_app"]

#: The bundled demo candidates and the file that keeps v2 stable beside them; tests work on
#: classifier 1 and 2 alone and add their own candidates.
_DEMO_ONLY = ("config.toml", "3", "4")


def make_repository(tmp: Path) -> Path:
    """A private, writable copy of the bundled models (tests may add or break versions)."""
    root = tmp / "models"
    shutil.copytree(
        bundled_models_dir(),
        root,
        ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__", *_DEMO_ONLY),
    )
    return root


def start_app(tmp: Path, **overrides: object) -> App:
    """A started server on 127.0.0.1, port 0, over a fresh copy of the bundled models."""
    from server.app import App

    settings: dict[str, object] = {
        "models_dir": make_repository(tmp),
        "state_dir": tmp / "state",
        "port": 0,
        "metrics_port": 0,
        "workers": 8,
        "grace_seconds": 2.0,
        "intra_op_threads": 1,
    }
    settings.update(overrides)
    app = App(load_config(None, settings))
    app.start()
    return app
