"""The client package on its own: its public names, and that nothing in it imports the server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import client

CLIENT_DIR = Path(client.__file__).resolve().parent
MODULES = sorted(CLIENT_DIR.rglob("*.py"))


def test_exported_members() -> None:
    assert client.__all__ == [
        "AdminClient",
        "ClientError",
        "InferResult",
        "InferenceClient",
        "Outcome",
        "OutcomesClient",
        "open_channel",
    ]
    assert client.__all__ == sorted(client.__all__)
    namespace: dict[str, object] = {}
    exec("from client import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == client.__all__
    for name in client.__all__:
        member = getattr(client, name)
        assert member.__module__.startswith("client."), name


def test_the_package_exposes_nothing_public_beyond_all() -> None:
    public = {
        name
        for name, value in vars(client).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(client.__all__)


def _callee(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _imported_modules(source: str) -> list[str]:
    """Every module `source` imports, including by importlib.import_module("...")."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
        elif (
            isinstance(node, ast.Call)
            and _callee(node.func) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(node.args[0].value)
    return found


def test_no_client_module_imports_the_server() -> None:
    assert len(MODULES) >= 8  # the walk found the package
    offending = {
        str(path.relative_to(CLIENT_DIR)): name
        for path in MODULES
        for name in _imported_modules(path.read_text())
        if name == "server" or name.startswith("server.")
    }
    assert offending == {}


def test_the_import_check_sees_every_form_of_import() -> None:
    source = (
        "import server\n"
        "import server.app as a\n"
        "from server.config import load_config\n"
        "from . import tensors\n"
        "def f():\n"
        "    import importlib\n"
        "    importlib.import_module('server.app')\n"
        "    __import__('server')\n"
    )
    assert _imported_modules(source) == [
        "server",
        "server.app",
        "server.config",
        "importlib",
        "server.app",
        "server",
    ]


def test_importing_every_client_module_loads_nothing_of_the_server() -> None:
    names = sorted(
        ".".join(("client", *p.relative_to(CLIENT_DIR).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for p in MODULES
    )
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'server' or m.startswith('server.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
