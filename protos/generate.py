"""Regenerates the committed Python stubs from the `.proto` sources under `protos/`.

Run from anywhere: `python -m protos.generate` (write) or `python -m protos.generate --check`
(exit 1 when the committed stubs differ from what the pinned grpcio-tools generates).
The repository root is the include path, so generated modules import each other as
`protos.<package path>` with no sys.path edits.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

__all__ = ["ROOT", "generate", "main", "proto_files"]

ROOT = Path(__file__).resolve().parent.parent
_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    """Every `.proto` source, relative to the repository root."""
    return sorted(p.relative_to(ROOT) for p in (ROOT / "protos").rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write the stubs for every proto source into `out_dir` (mirroring the source tree)."""
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(ROOT / p) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def _generated(tree: Path) -> set[Path]:
    found = (tree / "protos").rglob("*")
    return {p.relative_to(tree) for p in found if p.name.endswith(_SUFFIXES)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        wanted = _generated(fresh)
        present = _generated(ROOT)
        stale = sorted(
            str(p)
            for p in wanted | present
            if p not in wanted
            or p not in present
            or not filecmp.cmp(fresh / p, ROOT / p, shallow=False)
        )
        if args.check:
            if stale:
                print(
                    "stale generated stubs (run `python -m protos.generate`):", *stale, sep="\n  "
                )
                return 1
            return 0
        for rel in present - wanted:
            (ROOT / rel).unlink()
        for rel in wanted:
            shutil.copyfile(fresh / rel, ROOT / rel)
        print(f"generated {len(wanted)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
