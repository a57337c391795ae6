"""Copies etcd's v3 API protos into protos/etcd/, stripped of their Go-only annotations.

    python -m protos.etcd.vendor PATH-TO-ETCD-CHECKOUT     (at tag v3.4.23, the Debian etcd)

canaryserve talks to etcd through stubs generated from etcd's own API definitions (rpc.proto,
kv.proto, auth.proto), like every other stub here (`python -m protos.generate`). Stripped:
the gogoproto imports and options (Go code generation only) and the google.api.http
annotations (the JSON gateway); imports are rewritten to this tree. Messages, fields, field
numbers and services are untouched, so the wire format is etcd's.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["FILES", "strip"]

HERE = Path(__file__).resolve().parent
#: etcd source path (v3.4 layout) -> path under protos/etcd/
FILES = {
    "etcdserver/etcdserverpb/rpc.proto": "etcdserverpb/rpc.proto",
    "mvcc/mvccpb/kv.proto": "mvccpb/kv.proto",
    "auth/authpb/auth.proto": "authpb/auth.proto",
}
_IMPORTS = {
    "etcd/mvcc/mvccpb/kv.proto": "protos/etcd/mvccpb/kv.proto",
    "etcd/auth/authpb/auth.proto": "protos/etcd/authpb/auth.proto",
}
_HEADER = "// Vendored from etcd v3.4.23 by protos/etcd/vendor.py: Go-only annotations stripped.\n"


def strip(text: str) -> str:
    text = re.sub(r'import "(gogoproto/gogo|google/api/annotations)\.proto";\n', "", text)
    text = re.sub(r"option \(gogoproto\.[a-z_]+\) = [a-z]+;\n", "", text)
    text = _drop_http_options(text)
    text = re.sub(r"\s*\[\(gogoproto\.[^\]]*\]", "", text)
    for old, new in _IMPORTS.items():
        text = text.replace(f'import "{old}";', f'import "{new}";')
    return _HEADER + text


def _drop_http_options(text: str) -> str:
    """Remove each `option (google.api.http) = {...};` (its braces nest)."""
    while (match := re.search(r"\s*option \(google\.api\.http\) = \{", text)) is not None:
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        end = text.index(";", i) + 1
        text = text[: match.start()] + text[end:]
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[0])
    for src, dst in FILES.items():
        out = HERE / dst
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(strip((source / src).read_text(encoding="utf-8")), encoding="utf-8")
        (out.parent / "__init__.py").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
