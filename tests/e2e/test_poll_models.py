"""Poll mode (`--poll-models SECONDS`): a version directory that appears is loaded by itself,
routed to by nobody until a rollout names it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client.admin import AdminClient
from client.channel import open_channel
from client.inference import InferenceClient
from server.app import App
from tests.support.servers import start_app
from tests.support.waiting import wait_for

TOKEN = "poll"
X = np.zeros((1, 4), dtype=np.float32)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[App]:
    app = start_app(
        tmp_path,
        admin_tokens={"ops": TOKEN},
        poll_models_seconds=0.2,
        models={"classifier": {"stable": "1"}},
    )
    yield app
    app.stop(0)


def test_a_new_version_directory_is_loaded_but_not_routed_until_a_rollout_names_it(
    server: App,
) -> None:
    models = server.config.models_dir / "classifier"
    shutil.copytree(models / "1", models / "7")
    wait_for(
        lambda: "7" in server.registry.ready_versions("classifier"),
        message="version 7 loaded by the poller",
    )
    with InferenceClient(f"127.0.0.1:{server.port}") as c:
        answers = {
            c.infer("classifier", {"input": X}, routing_key=f"u{i}").version for i in range(50)
        }
        assert answers == {"1"}  # loaded, not routed to
        pinned = c.infer("classifier", {"input": X}, version="7")
        assert (pinned.version, pinned.stage) == ("7", "loaded")
    with AdminClient(open_channel(f"127.0.0.1:{server.port}"), TOKEN) as admin:
        assert admin.get("classifier").stable_version == "1"
        started = admin.start("classifier", "7", canary_ppm=1_000_000)
    assert started.rollout.candidate_version == "7"
    with InferenceClient(f"127.0.0.1:{server.port}") as c:
        assert c.infer("classifier", {"input": X}, routing_key="u1").version == "7"
