"""The `canaryserve` command line: run the server, and operate it through its gRPC APIs."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from client.access import flag_channel
from client.channel import DEFAULT_TARGET, TARGET_ENV
from client.errors import ClientError
from client.inference import InferenceClient, InferResult
from client.notify_commands import add_notify_commands
from client.operator import add_commands
from client.outcome_commands import add_outcome_commands
from client.output import emit
from client.tensors import numpy_dtype
from protos.wire import ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE, DEFAULT_STATE_DIR, ROUTING_KEY_HEADER

__all__ = ["main"]


# -- serve --


def exec_server(server_args: Sequence[str]) -> NoReturn:
    """Replace this process with the server (`python -m server`), so that signals sent to
    this process (SIGTERM, Ctrl-C) reach the server itself. The client imports nothing of the
    server; the server parses the flags (`canaryserve serve --help`)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "server", *server_args])


def _inference(args: argparse.Namespace) -> InferenceClient:
    return InferenceClient(args.target, timeout=args.timeout, channel=flag_channel(args))


# -- models --


def cmd_models(args: argparse.Namespace) -> int:
    with _inference(args) as client:
        index = client.index()
        # The sha256 of each ready version's model file, from its ModelConfig parameters.
        digests = {
            (m.name, m.version): client.config(m.name, m.version).parameters["sha256"].string_value
            for m in index
            if m.state == "READY"
        }
    rows = [
        {
            "model": m.name,
            "version": m.version,
            "state": m.state,
            "sha256": digests.get((m.name, m.version), ""),
            "reason": m.reason,
        }
        for m in index
    ]
    lines = [f"{'MODEL':<20} {'VERSION':<8} {'STATE':<12} {'SHA256':<12} REASON"]
    lines += [
        f"{r['model']:<20} {r['version']:<8} {r['state']:<12} {r['sha256'][:12] or '-':<12}"
        f" {r['reason']}"
        for r in rows
    ]
    emit(args, rows, "\n".join(lines))
    return 0


# -- infer --


def _parse_input(spec: str, datatypes: dict[str, str]) -> tuple[str, npt.NDArray[Any]]:
    name, sep, value = spec.partition("=")
    if not sep:
        raise ClientError(
            "INVALID_ARGUMENT", f"--input {spec!r}: expected NAME=VALUE or NAME=@file"
        )
    if name not in datatypes:
        known = ", ".join(sorted(datatypes))
        raise ClientError("INVALID_ARGUMENT", f"--input {name}: the model's inputs are {known}")
    if value.startswith("@"):
        array: npt.NDArray[Any] = np.load(value[1:], allow_pickle=False)
        return name, array
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ClientError("INVALID_ARGUMENT", f"--input {name}: not JSON ({exc})") from None
    datatype = datatypes[name]
    if datatype == "BYTES":
        array = np.array(parsed, dtype=object)
        flat = [str(v).encode() for v in array.flat]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return name, out.reshape(array.shape)
    return name, np.asarray(parsed, dtype=numpy_dtype(datatype))


def _result_json(result: InferResult) -> dict[str, Any]:
    def values(a: npt.NDArray[Any]) -> Any:
        if a.dtype == object:
            return [v.decode(errors="replace") for v in a.flat]
        return a.tolist()

    return {
        "model": result.model,
        "version": result.version,
        "parameters": result.parameters,
        "outputs": {
            n: {"shape": list(a.shape), "dtype": str(a.dtype), "data": values(a)}
            for n, a in result.outputs.items()
        },
    }


def cmd_infer(args: argparse.Namespace) -> int:
    with _inference(args) as client:
        meta = client.metadata(args.model, args.version or "")
        datatypes = {t.name: t.datatype for t in meta.inputs}
        inputs = dict(_parse_input(s, datatypes) for s in args.input)
        result = client.infer(args.model, inputs, version=args.version or "", routing_key=args.key)
    data = _result_json(result)
    params = ", ".join(f"{k}={v}" for k, v in sorted(result.parameters.items()))
    lines = [f"{result.model} version {result.version} ({params})"]
    lines += [f"  {n} {o['shape']}: {o['data']}" for n, o in data["outputs"].items()]
    emit(args, data, "\n".join(lines))
    return 0


def _operator_flags(parser: argparse.ArgumentParser) -> None:
    _json_flag(parser)
    parser.add_argument("--token", help=f"admin token (default: ${ADMIN_TOKEN_ENV}, then the file)")
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"where the server keeps {ADMIN_TOKEN_FILE} (default {DEFAULT_STATE_DIR})",
    )


def _json_flag(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps a global `--json` given before the subcommand from being reset.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )


def _global_flags(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The flags every command takes, before or after the command's name. Only the top-level
    parser sets defaults: a subcommand's copy (SUPPRESS) overrides them only when given."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--target",
        default=default(os.environ.get(TARGET_ENV) or DEFAULT_TARGET),
        help=f"server address (default ${TARGET_ENV}, else {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--timeout", type=float, default=default(10.0), help="deadline per call, seconds"
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=default(None),
        help="CA bundle to verify the server (enables TLS)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, default=default(None), help="client certificate (mTLS)"
    )
    parser.add_argument(
        "--tls-key", type=Path, default=default(None), help="client private key (mTLS)"
    )


def _accept_global_flags(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand (at any depth) the global flags it does not define itself."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if child.add_help:  # `serve` passes its flags on to the server untouched
                    known = set(child._option_string_actions)
                    scratch = argparse.ArgumentParser(add_help=False)
                    _global_flags(scratch, defaults=False)
                    for flag in scratch._actions:
                        if not known & set(flag.option_strings):
                            child._add_action(flag)
                    _accept_global_flags(child)


def _version() -> str:
    try:
        return f"canaryserve {importlib.metadata.version('canaryserve')}"
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "canaryserve (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canaryserve", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    _global_flags(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True)

    # The flags of `serve` belong to the server (python -m server), which parses them.
    sub.add_parser("serve", help="run the server (default: the bundled models)", add_help=False)

    models = sub.add_parser("models", help="list model versions and their state")
    _json_flag(models)
    models.set_defaults(func=cmd_models)

    infer = sub.add_parser("infer", help="run one inference")
    infer.add_argument("model")
    infer.add_argument("--version", help="pin a version (default: the router decides)")
    infer.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="NAME=VALUE",
        help="a JSON value (e.g. '[[1,2,3,4]]') or @file.npy; repeat per input",
    )
    infer.add_argument("--key", help=f"routing key (sent as {ROUTING_KEY_HEADER})")
    _json_flag(infer)
    infer.set_defaults(func=cmd_infer)
    add_commands(sub, _operator_flags)
    add_notify_commands(sub, _operator_flags)
    add_outcome_commands(sub, _json_flag)
    _accept_global_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        exec_server(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        code: int = args.func(args)
    except ClientError as exc:
        if exc.code == "UNAVAILABLE" and _no_connection(exc.details):
            print(
                f"canaryserve: no server at {args.target} (is `canaryserve serve` running?)",
                file=sys.stderr,
            )
        else:
            print(f"canaryserve: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's own flush at exit
        # from failing on the same closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE
    except KeyboardInterrupt:  # Ctrl-C, e.g. ending `status --watch`
        return 130
    return code


def _no_connection(details: str) -> bool:
    """True when gRPC could not reach the server at all (nothing listens there)."""
    lowered = details.lower()
    return any(
        hint in lowered
        for hint in ("failed to connect", "connection refused", "connect failed", "dns resolution")
    )


if __name__ == "__main__":
    sys.exit(main())
