"""The launcher's wait logic, with a scripted node list and against a real local Ray cluster."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from runtime_components.ray_launcher.wait import alive_gpus, wait_for_gpus


def node(alive: bool, gpus: float) -> dict:
    return {"Alive": alive, "Resources": {"CPU": 8.0, "GPU": gpus}}


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([], (0.0, 0)),
        ([node(True, 8), node(True, 8)], (16.0, 2)),
        ([node(True, 8), node(False, 8)], (8.0, 1)),
        ([{"Alive": True, "Resources": {"CPU": 4.0}}], (0.0, 1)),
    ],
)
def test_alive_gpus(nodes, expected):
    assert alive_gpus(nodes) == expected


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_waits_until_the_workers_join():
    t = FakeTime()
    joined = [node(True, 0)]  # the head has no GPU

    def nodes():
        if t.now >= 10 and len(joined) == 1:
            joined.append(node(True, 4))
        if t.now >= 20 and len(joined) == 2:
            joined.append(node(True, 4))
        return joined

    seen = []
    result = wait_for_gpus(8, nodes, timeout_s=60, poll_s=2, clock=t.clock, sleep=t.sleep, progress=lambda g, n: seen.append((g, n)))
    assert result.ready and result.gpus == 8 and result.alive_nodes == 3
    assert 20 <= result.waited_s <= 22
    assert seen == [(0.0, 1), (4.0, 2), (8.0, 3)]


def test_times_out_with_what_joined():
    t = FakeTime()
    result = wait_for_gpus(8, lambda: [node(True, 4)], timeout_s=30, poll_s=7, clock=t.clock, sleep=t.sleep)
    assert not result.ready and result.gpus == 4 and result.waited_s == 30


def test_rejects_nonsense():
    with pytest.raises(ValueError, match="at least 1"):
        wait_for_gpus(0, list, timeout_s=1)


@pytest.mark.slow
def test_against_a_real_local_ray_cluster(monkeypatch):
    ray = pytest.importorskip("ray")
    # Ray's socket paths must stay under 107 bytes: pytest's tmp_path is too deep.
    short_tmp = tempfile.mkdtemp(prefix="ray")
    monkeypatch.setenv("RAY_TMPDIR", short_tmp)  # keeps every Ray file, incl. its address file, in here
    os.makedirs(os.path.join(short_tmp, "ray"))
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # xds-protos installs an `opentelemetry.proto` namespace package; Ray then believes the
    # OpenTelemetry SDK is present and its agents die importing it.
    monkeypatch.setenv("RAY_enable_open_telemetry", "0")
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False},
    )
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        t = FakeTime()

        def nodes():
            if t.now >= 4 and len(ray.nodes()) == 1:
                cluster.add_node(num_cpus=1, num_gpus=2)  # a worker pod with a fake GPU count
                cluster.wait_for_nodes()
            return ray.nodes()

        result = wait_for_gpus(2, nodes, timeout_s=60, poll_s=2, clock=t.clock, sleep=t.sleep)
        assert result.ready and result.gpus == 2 and result.alive_nodes == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(short_tmp, ignore_errors=True)
