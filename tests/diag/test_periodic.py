"""Periodic mode: /metrics per check and GPU, XID hold window, node condition and taint over real HTTP."""

from __future__ import annotations

import datetime as dt
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvml
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from aibrix_spec.components.diag import DiagConfig, FaultFile, NodeActions
from runtime_components.common.fake_kube import FakeKubeApi, ThreadedServer
from runtime_components.diag.cli import main
from runtime_components.diag.daemon import run_periodic
from runtime_components.diag.fake_nvml import FakeNvml
from runtime_components.diag.loading import load_model_file
from runtime_components.diag.metrics import DiagCollector, MetricsServer
from runtime_components.diag.node_actions import NodeReporter
from runtime_components.diag.report import Report
from runtime_components.diag.session import DiagSession

from .helpers import FAULTS_DIR, result, run_pass

NODE = "gpu-node-1"


class ApiServer:
    """The fake Kubernetes API with one GPU node, served for the synchronous client."""

    def __init__(self, fake: FakeKubeApi, url: str) -> None:
        self.fake, self.url = fake, url

    @property
    def node(self) -> dict[str, Any]:
        return self.fake.nodes[NODE]

    def condition(self, condition_type: str) -> dict[str, Any]:
        condition = self.fake.node_condition(NODE, condition_type)
        assert condition is not None, f"node {NODE} has no {condition_type} condition"
        return condition

    def patches(self) -> list[tuple[str, str]]:
        return [(r.path, r.content_type) for r in self.fake.requests if r.method == "PATCH"]


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    fake = FakeKubeApi()
    fake.add_node(NODE, taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}])
    with ThreadedServer(fake.app()) as server:
        yield ApiServer(fake, server.url)


def core_api(server: ApiServer) -> Any:
    configuration = client.Configuration(host=server.url)
    return client.CoreV1Api(client.ApiClient(configuration))


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_per_check_and_gpu() -> None:
    faults = load_model_file(FAULTS_DIR / "pcie-width-degraded.yaml", FaultFile)
    collector = DiagCollector()
    server = MetricsServer(collector, address="127.0.0.1", port=0)
    try:
        with DiagSession(FakeNvml(faults), DiagConfig(expected_gpu_count=8), node=faults.node) as session:
            run_periodic(session, interval_seconds=0.01, stop=threading.Event(), collector=collector, max_passes=2)
        samples = scrape(server.port)
    finally:
        server.close()
    uuid = "GPU-mock-gpu-node-pcie-3"
    assert samples[("aibrix_diag_check_status", (("check", "pcie"), ("gpu", "3"), ("uuid", uuid)))] == 2
    assert (
        samples[("aibrix_diag_check_status", (("check", "pcie"), ("gpu", "2"), ("uuid", "GPU-mock-gpu-node-pcie-2")))]
        == 0
    )
    assert (
        samples[("aibrix_diag_check_value", (("check", "pcie"), ("gpu", "3"), ("name", "width"), ("uuid", uuid)))] == 8
    )
    assert samples[("aibrix_diag_check_status", (("check", "device-count"), ("gpu", "node"), ("uuid", "")))] == 0
    assert samples[("aibrix_diag_node_status", ())] == 2
    assert samples[("aibrix_diag_passes_total", ())] == 2
    assert samples[("aibrix_diag_nvml_available", ())] == 1


def test_xid_stays_reported_for_the_hold_window_then_clears() -> None:
    now = [1000.0]
    faults = FaultFile.model_validate({"gpus": [{"index": 5, "xidEvents": [79]}]})
    config = DiagConfig(expected_gpu_count=8, xid_hold_seconds=600)
    seen = []
    with DiagSession(FakeNvml(faults), config, node="n", clock=lambda: now[0]) as session:
        for advance in (0, 599, 2):
            now[0] += advance
            seen.append(result(session.run_pass(xid_wait_ms=0), "xid", 5).status.label)
    assert seen == ["fail", "fail", "ok"]


def reports(*fault_dicts: dict[str, Any]) -> list[Report]:
    return [run_pass(f) for f in fault_dicts]


FAILING = {"gpus": [{"index": 2, "pcie": {"currentWidth": 4}}]}
HEALTHY: dict[str, Any] = {}


def test_condition_and_taint_with_hysteresis(apiserver: ApiServer) -> None:
    times = iter(dt.datetime(2026, 5, 1, 12, 0, s, tzinfo=dt.UTC) for s in range(60))
    actions = NodeActions(set_condition=True, taint_on_failure=True, failures_before_taint=2, passes_before_untaint=2)
    reporter = NodeReporter(core_api(apiserver), NODE, actions, now=lambda: next(times))
    taint_key = actions.taint_key
    history = []
    for report in reports(FAILING, FAILING, HEALTHY, HEALTHY):
        reporter.apply(report)
        condition = apiserver.condition("AIBrixGPUProblem")
        tainted = any(t["key"] == taint_key for t in apiserver.node["spec"]["taints"])
        history.append((condition["status"], condition["reason"], tainted))
    assert history == [
        ("True", "GpuCheckFailed", False),
        ("True", "GpuCheckFailed", True),
        ("False", "GpuChecksPassed", True),
        ("False", "GpuChecksPassed", False),
    ]
    assert reporter.errors == 0
    # The other taint and the kubelet's condition were left alone.
    assert apiserver.node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    assert apiserver.condition("Ready")["status"] == "True"
    patches = apiserver.patches()
    assert set(patches) == {
        (f"/api/v1/nodes/{NODE}/status", "application/strategic-merge-patch+json"),
        (f"/api/v1/nodes/{NODE}", "application/merge-patch+json"),
    }
    assert len([p for p in patches if not p[0].endswith("/status")]) == 2  # add once, remove once


def test_transition_time_changes_only_with_the_status(apiserver: ApiServer) -> None:
    times = iter(dt.datetime(2026, 5, 1, 12, 0, s, tzinfo=dt.UTC) for s in range(60))
    reporter = NodeReporter(core_api(apiserver), NODE, NodeActions(set_condition=True), now=lambda: next(times))
    stamps = []
    for report in reports(HEALTHY, HEALTHY, FAILING):
        reporter.apply(report)
        condition = apiserver.condition("AIBrixGPUProblem")
        stamps.append((condition["lastTransitionTime"], condition["lastHeartbeatTime"]))
    assert stamps == [
        ("2026-05-01T12:00:00Z", "2026-05-01T12:00:00Z"),
        ("2026-05-01T12:00:00Z", "2026-05-01T12:00:01Z"),
        ("2026-05-01T12:00:02Z", "2026-05-01T12:00:02Z"),
    ]


def test_taint_patch_retries_on_conflict(apiserver: ApiServer) -> None:
    apiserver.fake.conflicts_to_inject = 1
    reporter = NodeReporter(core_api(apiserver), NODE, NodeActions(taint_on_failure=True, failures_before_taint=1))
    reporter.apply(run_pass(FAILING))
    assert [t["key"] for t in apiserver.node["spec"]["taints"]] == ["nvidia.com/gpu", "aibrix.ai/gpu-unhealthy"]
    assert len(apiserver.patches()) == 2
    assert reporter.errors == 0


def test_no_nvml_sets_unknown_and_keeps_the_counts(apiserver: ApiServer) -> None:
    reporter = NodeReporter(core_api(apiserver), NODE, NodeActions(set_condition=True))
    reporter.apply(run_pass({"nvml": "library-missing"}))
    condition = apiserver.condition("AIBrixGPUProblem")
    assert (condition["status"], condition["reason"]) == ("Unknown", "NvmlUnavailable")
    assert (reporter.consecutive_failures, reporter.consecutive_passes) == (0, 0)


def test_api_errors_are_counted_not_raised(apiserver: ApiServer) -> None:
    reporter = NodeReporter(core_api(apiserver), "some-other-node", NodeActions(set_condition=True))
    reporter.apply(run_pass(FAILING))
    assert reporter.errors == 1


def test_cli_periodic_end_to_end(apiserver: ApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: '{apiserver.url}'}}}}]\n"
        "users: [{name: fake, user: {token: test-token}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: fake}}]\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "intervalSeconds: 0.01\nmetrics: {port: 0, bindAddress: 127.0.0.1}\n"
        "node: {setCondition: true, taintOnFailure: true, failuresBeforeTaint: 2}\n"
    )
    code = main(
        [
            "--periodic",
            "--mock",
            str(FAULTS_DIR / "xid-fallen-off-bus.yaml"),
            "--config",
            str(config),
            "--kubeconfig",
            str(kubeconfig),
            "--node-name",
            NODE,
            "--max-passes",
            "2",
            "--log-level",
            "ERROR",
        ]
    )
    assert code == 2
    assert apiserver.condition("AIBrixGPUProblem")["message"].startswith("failing checks: xid;")
    assert [t["key"] for t in apiserver.node["spec"]["taints"]] == ["nvidia.com/gpu", "aibrix.ai/gpu-unhealthy"]
    assert capsys.readouterr().out.count("aibrix-diag on node gpu-node-1: FAIL") == 2


def test_metrics_without_nvml_say_so() -> None:
    collector = DiagCollector()
    server = MetricsServer(collector, address="127.0.0.1", port=0)
    try:
        faults = FaultFile(nvml="library-missing")
        with DiagSession(FakeNvml(faults), DiagConfig(), node="cpu-node") as session:
            run_periodic(session, interval_seconds=0.01, stop=threading.Event(), collector=collector, max_passes=1)
        samples = scrape(server.port)
    finally:
        server.close()
    assert (samples[("aibrix_diag_nvml_available", ())], samples[("aibrix_diag_node_status", ())]) == (0, 3)
    assert not any(name == "aibrix_diag_check_status" for name, _ in samples)


def test_xid_history_survives_a_change_in_the_gpu_set() -> None:
    nv = FakeNvml(FaultFile.model_validate({"gpus": [{"index": 5, "xidEvents": [48]}]}))
    with DiagSession(nv, DiagConfig(expected_gpu_count=8), node="n") as session:
        first = session.run_pass(xid_wait_ms=0)
        nv.update_gpu(2, lost=True)  # GPU 2 becomes unreadable: the event set is registered afresh
        second = session.run_pass(xid_wait_ms=0)
        nv.update_gpu(6, xid_events=[13])  # a new event after re-registration is still delivered
        third = session.run_pass(xid_wait_ms=0)
    assert result(first, "xid", 5).status.label == "fail"
    assert (result(second, "xid", 5).status.label, result(second, "device-access", 2).status.label) == ("fail", "fail")
    assert (result(third, "xid", 5).status.label, result(third, "xid", 6).status.label) == ("fail", "warn")


class WedgedNvml(FakeNvml):
    """NVML initialised, then the driver stops answering."""

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)


def test_nvml_that_stops_answering_is_a_failure_not_a_crash() -> None:
    with DiagSession(WedgedNvml(FaultFile()), DiagConfig(), node="n") as session:
        report = session.run_pass(xid_wait_ms=0)
    assert (report.status, result(report, "driver", None).message) == (
        "fail",
        "NVML stopped answering (Unknown Error): the driver is wedged; drain the node and reboot it",
    )
