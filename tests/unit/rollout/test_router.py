"""Tests of the pure router (server.rollout.router) and the routing spec's test vectors.

Regenerate protos/routing_vectors.json with
`PYTHONPATH=. python tests/unit/rollout/test_router.py` (from the repo root).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import random
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.errors import FailedPrecondition, InvalidInput, ModelNotFound, ModelVersionNotFound
from server.rollout.router import (
    DOMAIN_CANARY,
    DOMAIN_SHADOW,
    PPM,
    CandidateRouting,
    CohortRule,
    ModelRouting,
    Route,
    RouteReason,
    RoutingTable,
    Stage,
    _bucket_of,
    _position_of,
    bucket,
    position,
    route,
    stage_of,
)

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "protos" / "routing_vectors.json"

# --------------------------------------------------------------------------- helpers


def reference_u64(domain: str, salt: str, key: str) -> int:
    """The spec's u, written independently of the implementation."""
    data = b"".join([domain.encode("utf-8"), b"\x00", salt.encode("utf-8"), b"\x00"])
    data += key.encode("utf-8")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], byteorder="big", signed=False)


def reference_bucket(u: int) -> int:
    return math.floor(Fraction(u, 2**64) * PPM)


def reference_position(u: int) -> float:
    return float(Fraction(u - u % 2**11, 2**64))  # u / 2^64 truncated to 53 bits


def table(
    *,
    canary: int = 0,
    shadow: int = 0,
    rules: tuple[CohortRule, ...] = (),
    allow_pinning: bool = True,
    rollout: bool = True,
    salt: str = "rollout-1",
) -> RoutingTable:
    ro = CandidateRouting("v2", salt, canary_ppm=canary, shadow_ppm=shadow, cohort_rules=rules)
    models = {
        "resnet": ModelRouting(
            stable="v1", rollout=ro if rollout else None, ready=frozenset({"v1", "v2", "v0"})
        ),
        "bert": ModelRouting(stable="7", ready=frozenset({"7"})),
    }
    return RoutingTable(MappingProxyType(models), allow_pinning=allow_pinning, revision=3)


def keys(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"user-{rng.getrandbits(64):016x}" for _ in range(n)]


NO_MD: MappingProxyType[str, str] = MappingProxyType({})
# Valid text: no lone surrogates (not encodable as UTF-8, cannot arrive over gRPC).
TEXT = st.characters(exclude_categories=["Cs"])

# --------------------------------------------------------------------------- test vectors

_BOUNDARY_SALT = "boundary"
# Keys found by search whose bucket sits exactly on an edge: (domain, key, its bucket, ppm).
_BOUNDARY: list[tuple[str, str, int, list[int]]] = [
    (DOMAIN_CANARY, "b-2085003", 0, [0, 1]),
    (DOMAIN_CANARY, "b-1282477", 99, [100]),
    (DOMAIN_CANARY, "b-506634", 100, [100]),
    (DOMAIN_CANARY, "b-1433625", 49_999, [50_000]),
    (DOMAIN_CANARY, "b-2232349", 50_000, [50_000]),
    (DOMAIN_CANARY, "b-1079862", 499_999, [500_000]),
    (DOMAIN_CANARY, "b-326696", 500_000, [500_000]),
    (DOMAIN_CANARY, "b-739951", 999_998, [999_999]),
    (DOMAIN_CANARY, "b-14629", 999_999, [999_999, 1_000_000]),
    (DOMAIN_SHADOW, "b-2022058", 0, [1]),
    (DOMAIN_SHADOW, "b-968491", 99, [100]),
    (DOMAIN_SHADOW, "b-1427667", 999_999, [999_999, 1_000_000]),
]


def _vector_cases() -> list[tuple[str, str, str, int]]:
    """(domain, salt, key, ppm) of every vector, in file order."""
    c, s, salt = DOMAIN_CANARY, DOMAIN_SHADOW, "rollout-1"
    prefix_len = len(f"{c}\x00{salt}\x00")  # 17 bytes
    cases: list[tuple[str, str, str, int]] = [
        # ASCII keys
        (c, salt, "user-1", 50_000),
        (c, salt, "user-2", 500_000),
        (c, salt, "user-3", 100),
        (c, salt, "alice", 1),
        (c, salt, "bob@example.com", 999_999),
        (c, salt, "0", 1_000_000),
        (c, salt, "a", 0),
        (c, salt, "session:7f3c9a1e", 50_000),
        (c, salt, "User-1", 50_000),  # case matters
        (c, salt, "user-1 ", 50_000),  # no trimming
    ]
    # one key through every weight: monotone
    cases += [(c, salt, "user-42", w) for w in (0, 1, 100, 50_000, 500_000, 999_999, PPM)]
    cases += [  # empty salt
        (c, "", "user-1", 50_000),
        (c, "", "alice", 500_000),
        (c, "", "中文", 500_000),
        (c, "", "user-42", PPM),
    ]
    cases += [  # non-ASCII keys and salts
        (c, salt, "é", 500_000),
        (c, salt, "e\u0301", 500_000),  # decomposed é: no normalization
        (c, salt, "中文", 50_000),
        (c, salt, "用户-42", 500_000),
        (c, salt, "🙂", 500_000),
        (c, salt, "👩\u200d💻", 50_000),  # ZWJ sequence
        (c, salt, "Ωmega", 999_999),
        (c, salt, "naïve café", 100),
        (c, "déploiement-3", "user-1", 500_000),
        (c, "灰度-2", "user-1", 50_000),
    ]
    cases += [  # long keys; whole inputs of 55, 56 and 64 bytes (SHA-256 padding edges)
        (c, salt, "k" * 100, 500_000),
        (c, salt, "x" * 1000, 50_000),
        (c, salt, "p" * (55 - prefix_len), 500_000),
        (c, salt, "p" * (56 - prefix_len), 500_000),
        (c, salt, "p" * (64 - prefix_len), 500_000),
    ]
    cases += [
        (domain, _BOUNDARY_SALT, key, w) for domain, key, _, weights in _BOUNDARY for w in weights
    ]
    cases += [  # shadow domain: "canary_ppm"/"in_canary" read as shadow_ppm/sampled
        (s, salt, "user-1", 100_000),
        (s, salt, "user-2", 50_000),
        (s, salt, "user-42", 500_000),
        (s, salt, "中文", 500_000),
        (s, salt, "🙂", 1),
        (s, salt, "alice", PPM),
        (s, salt, "x" * 1000, 0),
        (s, "", "user-1", 50_000),
    ]
    return cases


def build_vectors() -> dict[str, Any]:
    vectors = []
    for domain, salt, key, ppm in _vector_cases():
        b = bucket(salt, key, domain)
        vectors.append(
            {
                "domain": domain,
                "salt": salt,
                "key": key,
                "u64": str(reference_u64(domain, salt, key)),
                "bucket": b,
                "position": position(salt, key, domain),
                "canary_ppm": ppm,
                "in_canary": b < ppm,
            }
        )
    return {"spec": "docs/routing.md", "vectors": vectors}


def render_vectors(doc: dict[str, Any]) -> str:
    """One vector per line, UTF-8 (not \\u-escaped), so diffs and eyes can follow it."""
    lines = [json.dumps(v, ensure_ascii=False) for v in doc["vectors"]]
    body = ",\n    ".join(lines)
    return f'{{\n  "spec": {json.dumps(doc["spec"])},\n  "vectors": [\n    {body}\n  ]\n}}\n'


def load_vectors() -> list[dict[str, Any]]:
    doc = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert doc["spec"] == "docs/routing.md"
    vectors: list[dict[str, Any]] = doc["vectors"]
    return vectors


def test_vectors_file_is_what_the_generator_writes() -> None:
    assert VECTORS.read_text(encoding="utf-8") == render_vectors(build_vectors())


def test_every_vector_recomputes_from_the_spec() -> None:
    for v in load_vectors():
        domain, salt, key = v["domain"], v["salt"], v["key"]
        u = reference_u64(domain, salt, key)
        assert v["u64"] == str(u), v
        assert v["bucket"] == reference_bucket(u) == bucket(salt, key, domain), v
        assert v["position"] == reference_position(u) == position(salt, key, domain), v
        assert 0.0 <= v["position"] < 1.0
        assert v["in_canary"] is (v["bucket"] < v["canary_ppm"]), v


def test_vectors_cover_what_the_spec_promises() -> None:
    vs = load_vectors()
    assert 50 <= len(vs) <= 80
    assert {v["domain"] for v in vs} == {DOMAIN_CANARY, DOMAIN_SHADOW}
    weights = {v["canary_ppm"] for v in vs}
    assert {0, 1, 100, 50_000, 500_000, 999_999, PPM} <= weights
    assert any(v["salt"] == "" for v in vs)
    assert any(not v["key"].isascii() for v in vs)
    assert any(not v["salt"].isascii() for v in vs)
    assert any(len(v["key"]) >= 1000 for v in vs)
    assert {True, False} == {v["in_canary"] for v in vs}
    buckets = {(v["domain"], v["bucket"]) for v in vs}
    assert {(d, b) for d, _, b, _ in _BOUNDARY} <= buckets


def test_route_agrees_with_every_vector() -> None:
    """route() itself (not only bucket()) decides by `bucket < ppm`, also on the edges."""
    for v in load_vectors():
        salt, key, ppm = v["salt"], v["key"], v["canary_ppm"]
        if v["domain"] == DOMAIN_CANARY:
            r = route(table(canary=ppm, salt=salt), "resnet", key, NO_MD, None)
            assert (r.version == "v2") is v["in_canary"], v
            assert r.position == v["position"], v
        else:
            r = route(table(canary=0, shadow=ppm, salt=salt), "resnet", key, NO_MD, None)
            assert (r.shadow_version == "v2") is v["in_canary"], v


def test_boundary_keys_still_sit_on_their_edges() -> None:
    for domain, key, expected, _ in _BOUNDARY:
        assert bucket(_BOUNDARY_SALT, key, domain) == expected


# --------------------------------------------------------------------------- the hash


@pytest.mark.parametrize("b", [1, 99, 100, 101, 10_000, 50_000, 500_000, 999_999])
def test_bucket_arithmetic_is_exact_at_boundaries(b: int) -> None:
    first_u = -(-b * 2**64 // PPM)  # smallest u with floor(u * PPM / 2^64) == b
    assert _bucket_of(first_u) == b
    assert _bucket_of(first_u - 1) == b - 1


def test_hash_extremes() -> None:
    """The smallest and largest hashes map into bucket 0..PPM-1 and position [0, 1)."""
    assert _bucket_of(0) == 0 and _position_of(0) == 0.0
    top = 2**64 - 1
    assert _bucket_of(top) == PPM - 1
    assert _position_of(top) < 1.0  # a rounded u / 2^64 would give 1.0 here
    assert top / 2**64 == 1.0


def test_domains_are_independent_draws() -> None:
    """Canary and shadow hash one key differently."""
    assert bucket("s", "user-1", DOMAIN_CANARY) != bucket("s", "user-1", DOMAIN_SHADOW)


def test_separators_make_the_input_unambiguous() -> None:
    assert bucket("ab", "c", DOMAIN_CANARY) != bucket("a", "bc", DOMAIN_CANARY)


def test_salt_with_nul_is_rejected() -> None:
    with pytest.raises(ValueError, match="NUL"):
        CandidateRouting("v2", "a\x00b")


def test_key_that_is_not_valid_text_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="routing key"):
        route(table(canary=50_000), "resnet", "bad\ud800key", NO_MD, None)


def test_same_key_same_route() -> None:
    """Equal tables route a key the same way every time."""
    t = table(canary=300_000, shadow=300_000)
    for key in keys(200, seed=1):
        first = route(t, "resnet", key, NO_MD, None)
        again = route(table(canary=300_000, shadow=300_000), "resnet", key, {}, None)
        assert first == again


def test_no_dependence_on_python_hash_seed() -> None:
    ks = keys(20, seed=2)
    here = [bucket("rollout-1", k, DOMAIN_CANARY) for k in ks]
    code = (
        "import json, sys\n"
        "import server.rollout.router as r\n"
        "ks = json.loads(sys.argv[1])\n"
        "assert not any(m == 'grpc' or m.startswith(('grpc.', 'protos')) for m in sys.modules)\n"
        "print(json.dumps([r.bucket('rollout-1', k, r.DOMAIN_CANARY) for k in ks]))\n"
    )
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(ks)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert json.loads(out.stdout) == here


def test_router_module_is_pure() -> None:
    """Only stdlib without I/O, clock or randomness, plus server.errors."""
    tree = ast.parse((ROOT / "server" / "rollout" / "router.py").read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    allowed = {
        "__future__",
        "collections.abc",
        "dataclasses",
        "enum",
        "hashlib",
        "server.errors",
        "struct",
        "types",
    }
    assert imported <= allowed, imported - allowed


# --------------------------------------------------------------------------- distribution


@given(
    key=st.text(TEXT, min_size=1, max_size=40),
    salt=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20),
    w1=st.integers(0, PPM),
    w2=st.integers(0, PPM),
)
def test_ramps_are_monotone(key: str, salt: str, w1: int, w2: int) -> None:
    lo, hi = min(w1, w2), max(w1, w2)
    in_lo = route(table(canary=lo, salt=salt), "resnet", key, NO_MD, None).version == "v2"
    in_hi = route(table(canary=hi, salt=salt), "resnet", key, NO_MD, None).version == "v2"
    assert in_hi or not in_lo


def test_new_salt_redraws_the_cohort() -> None:
    ks = keys(10_000, seed=3)
    a = {k for k in ks if bucket("rollout-1", k, DOMAIN_CANARY) < 100_000}
    b = {k for k in ks if bucket("rollout-2", k, DOMAIN_CANARY) < 100_000}
    assert 0.09 < len(a) / len(ks) < 0.11 and 0.09 < len(b) / len(ks) < 0.11
    assert 0.006 <= len(a & b) / len(ks) <= 0.014


def test_canary_share_is_uniform_and_fine_grained() -> None:
    ks = keys(200_000, seed=4)
    buckets = [bucket("rollout-1", k, DOMAIN_CANARY) for k in ks]
    for pct in (1, 5, 50):
        share = sum(b < pct * 10_000 for b in buckets[:100_000]) / 100_000
        assert abs(share - pct / 100) <= 0.005, (pct, share)
    # 100 ppm = 0.01 %: 20 expected among 200,000 (sd ≈ 4.5)
    assert 8 <= sum(b < 100 for b in buckets) <= 35
    # the buckets themselves are uniform over [0, 10^6): deciles within ±0.5 pp of 10 %
    deciles = [0] * 10
    for b in buckets:
        deciles[b // 100_000] += 1
    assert all(abs(n / len(buckets) - 0.1) <= 0.005 for n in deciles), deciles


def test_weight_extremes() -> None:
    """Weight 0 sends every key to stable, weight PPM every key to the candidate."""
    for key in keys(500, seed=5):
        assert route(table(canary=0), "resnet", key, NO_MD, None).version == "v1"
        assert route(table(canary=PPM), "resnet", key, NO_MD, None).version == "v2"


# --------------------------------------------------------------------------- decision order


def test_unknown_model() -> None:
    """An unknown model is NOT_FOUND listing the known ones, before any pin."""
    with pytest.raises(ModelNotFound, match="known models: bert, resnet") as exc:
        route(table(), "gpt", "user-1", NO_MD, None)
    assert exc.value.model == "gpt"
    with pytest.raises(ModelNotFound):  # before the pin is looked at
        route(table(allow_pinning=False), "gpt", "user-1", NO_MD, "v1")


def test_no_rollout() -> None:
    """Without a rollout every call goes to stable with reason no_rollout."""
    md = {"tier": "beta"}
    r = route(table(rollout=False), "resnet", "user-1", md, None)
    assert r == Route("v1", Stage.STABLE, RouteReason.NO_ROLLOUT)
    assert route(table(), "bert", None, NO_MD, "") == Route(
        "7", Stage.STABLE, RouteReason.NO_ROLLOUT
    )


def test_hashed_route_matches_the_spec_functions() -> None:
    t = table(canary=200_000, shadow=300_000)
    for key in keys(2_000, seed=6):
        r = route(t, "resnet", key, NO_MD, None)
        assert type(r) is Route and r.reason is RouteReason.HASH
        assert r.position == position("rollout-1", key, DOMAIN_CANARY)
        if bucket("rollout-1", key, DOMAIN_CANARY) < 200_000:
            assert (r.version, r.stage, r.shadow_version) == ("v2", Stage.CANARY, None)
        else:
            sampled = bucket("rollout-1", key, DOMAIN_SHADOW) < 300_000
            assert (r.version, r.stage) == ("v1", Stage.STABLE)
            assert r.shadow_version == ("v2" if sampled else None)


@pytest.mark.parametrize("key", [None, ""])
def test_keyless_gets_stable_and_no_router_shadow(key: str | None) -> None:
    r = route(table(canary=PPM, shadow=PPM), "resnet", key, NO_MD, None)
    assert r == Route("v1", Stage.STABLE, RouteReason.NO_KEY, position=None, shadow_version=None)


RULES = (
    CohortRule("tier", "internal", Stage.CANARY),
    CohortRule("tier", "beta", Stage.STABLE),
    CohortRule("region", "eu", Stage.CANARY),
    CohortRule("region", "us", Stage.STABLE),
)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"tier": "internal"}, "v2"),
        ({"tier": "beta"}, "v1"),
        ({"region": "eu"}, "v2"),
        ({"tier": "beta", "region": "eu"}, "v1"),  # first matching rule wins
        ({"tier": "internal", "region": "us"}, "v2"),
        ({"region": "us", "tier": "internal"}, "v2"),  # rule order, not metadata order
    ],
)
def test_cohort_rules_precedence(metadata: dict[str, str], expected: str) -> None:
    """The first matching cohort rule wins over the hash and a missing key."""
    for canary in (0, PPM):  # cohort rules beat the hash either way
        for key in ("user-1", None):  # ... and the missing key
            r = route(table(canary=canary, rules=RULES), "resnet", key, metadata, None)
            assert r.version == expected and r.reason is RouteReason.COHORT
            assert r.stage is (Stage.CANARY if expected == "v2" else Stage.STABLE)
            assert r.position is None


@pytest.mark.parametrize(
    "metadata", [{}, {"tier": "Internal"}, {"Tier": "internal"}, {"tier": "internal "}]
)
def test_cohort_rules_need_an_exact_match(metadata: dict[str, str]) -> None:
    r = route(table(canary=0, rules=RULES), "resnet", "user-1", metadata, None)
    assert r.reason is RouteReason.HASH and r.version == "v1"


def test_cohort_to_stable_is_still_shadow_sampled() -> None:
    t = table(canary=PPM, shadow=500_000, rules=RULES)
    md = {"tier": "beta"}
    sampled = 0
    for key in keys(1_000, seed=7):
        r = route(t, "resnet", key, md, None)
        assert (r.version, r.reason) == ("v1", RouteReason.COHORT)
        in_sample = bucket("rollout-1", key, DOMAIN_SHADOW) < 500_000
        assert r.shadow_version == ("v2" if in_sample else None)
        sampled += in_sample
    assert 400 < sampled < 600
    # keyless: the caller samples at random, the router does not
    assert route(t, "resnet", None, md, None).shadow_version is None
    # cohort to canary is never shadowed
    assert route(t, "resnet", "user-1", {"tier": "internal"}, None).shadow_version is None


def test_cohort_rule_target_is_validated_and_normalized() -> None:
    with pytest.raises(ValueError, match="canary or stable"):
        CohortRule("tier", "x", Stage.SHADOW)
    rule = CohortRule("tier", "internal", "canary")  # type: ignore[arg-type]
    assert rule.target is Stage.CANARY
    r = route(table(rules=(rule,)), "resnet", "user-1", {"tier": "internal"}, None)
    assert r.version == "v2"


# pinning: (allow_pinning, pinned) -> expected Route or exception
@pytest.mark.parametrize(
    ("allow", "pinned", "expected"),
    [
        (True, "v1", Route("v1", Stage.STABLE, RouteReason.PINNED)),
        (True, "v2", Route("v2", Stage.CANARY, RouteReason.PINNED)),
        (True, "v0", Route("v0", Stage.LOADED, RouteReason.PINNED)),
        (True, "v9", ModelVersionNotFound),
        (False, "v1", FailedPrecondition),
        (False, "v9", FailedPrecondition),
        (True, "", RouteReason.HASH),  # empty pin = no pin
        (False, "", RouteReason.HASH),
        (True, None, RouteReason.HASH),
        (False, None, RouteReason.HASH),
    ],
)
def test_pinning_matrix(allow: bool, pinned: str | None, expected: object) -> None:
    """A pin wins over rules and hashing when allowed and ready, else says why."""
    t = table(canary=500_000, shadow=PPM, rules=RULES, allow_pinning=allow)
    md = {"tier": "beta"}  # a cohort rule and a full shadow rate: pins ignore both
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected) as exc:
            route(t, "resnet", "user-1", md, pinned)
        if expected is FailedPrecondition:
            assert "pinning versions is disabled on this server; omit model_version" in str(
                exc.value
            )
        else:
            assert "versions: v0, v1, v2" in str(exc.value)
    elif isinstance(expected, Route):
        assert route(t, "resnet", "user-1", md, pinned) == expected
        assert route(t, "resnet", None, NO_MD, pinned) == expected
    else:
        assert route(t, "resnet", "user-1", NO_MD, pinned).reason is expected


def test_pin_to_a_shadow_only_candidate_reports_shadow() -> None:
    r = route(table(canary=0, shadow=PPM), "resnet", "user-1", NO_MD, "v2")
    assert r == Route("v2", Stage.SHADOW, RouteReason.PINNED)


def test_pin_without_rollout() -> None:
    """A pin to a loaded non-stable version is stage loaded."""
    assert route(table(rollout=False), "resnet", "k", NO_MD, "v2") == Route(
        "v2", Stage.LOADED, RouteReason.PINNED
    )


@given(
    key=st.text(TEXT, max_size=30),
    canary=st.integers(0, PPM),
    shadow=st.integers(0, PPM),
)
def test_shadow_never_includes_canary_routed_requests(key: str, canary: int, shadow: int) -> None:
    r = route(table(canary=canary, shadow=shadow), "resnet", key, NO_MD, None)
    assert r.shadow_version in (None, "v2")
    if r.shadow_version is not None:
        assert r.version == "v1" and r.stage is Stage.STABLE
    if r.version == "v2":
        assert r.shadow_version is None


def test_shadow_sample_is_not_the_canary_cohort() -> None:
    """Independent draws: 10 % shadow during a 10 % canary samples ≈ 10 % of stable traffic."""
    t = table(canary=100_000, shadow=100_000)
    routes = [route(t, "resnet", k, NO_MD, None) for k in keys(20_000, seed=8)]
    stable = [r for r in routes if r.version == "v1"]
    share = sum(r.shadow_version is not None for r in stable) / len(stable)
    assert 0.09 < share < 0.11


# --------------------------------------------------------------------------- stages, types


def test_stage_of() -> None:
    """A version's stage: stable, canary or shadow candidate, or merely loaded."""
    canary = table(canary=1).models["resnet"]
    shadow_only = table(canary=0, shadow=50_000).models["resnet"]
    none = table(rollout=False).models["resnet"]
    assert stage_of(canary, "v1") is Stage.STABLE
    assert stage_of(canary, "v2") is Stage.CANARY
    assert stage_of(shadow_only, "v2") is Stage.SHADOW
    assert stage_of(canary, "v0") is Stage.LOADED
    assert stage_of(none, "v2") is Stage.LOADED
    assert stage_of(none, "v1") is Stage.STABLE


@pytest.mark.parametrize("bad", [-1, PPM + 1, True, 0.5, "10"])
def test_rollout_rejects_bad_rates(bad: object) -> None:
    """Rates outside 0..PPM (or not integers) are refused."""
    with pytest.raises(ValueError, match="canary_ppm"):
        CandidateRouting("v2", "s", canary_ppm=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shadow_ppm"):
        CandidateRouting("v2", "s", shadow_ppm=bad)  # type: ignore[arg-type]


def test_candidate_must_differ_from_stable() -> None:
    with pytest.raises(ValueError, match="is the stable version"):
        ModelRouting("v1", CandidateRouting("v1", "s", canary_ppm=1))


def test_types_stay_immutable_and_comparable() -> None:
    a, b = table(canary=5, rules=RULES), table(canary=5, rules=RULES)
    assert a.models["resnet"] == b.models["resnet"]
    assert hash(a.models["resnet"].rollout) == hash(b.models["resnet"].rollout)
    assert CandidateRouting("v2", "s", cohort_rules=list(RULES)).cohort_rules == RULES  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        a.models["resnet"].stable = "v9"  # type: ignore[misc]
    assert RoutingTable().models == {}


if __name__ == "__main__":
    VECTORS.write_text(render_vectors(build_vectors()), encoding="utf-8")
    print(f"wrote {len(_vector_cases())} vectors to {VECTORS}")
