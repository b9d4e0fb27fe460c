"""`aibrix-scaler` CLI: check, clear errors without tracebacks, and `run` against an API server."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest

from runtime_components.common.fake_kube import FakeKubeApi, Workload, pod_object
from runtime_components.scaler.cli import main
from tests.scaler.helpers import metrics_app, serve

GOOD = """\
targets:
  - name: llama
    scaleTargetRef: {name: llama, namespace: llm}
    podSelector: {model.aibrix.ai/name: llama}
    metric: {name: 'vllm:num_requests_running', source: engine, aggregation: per-pod}
    target: 10
    maxReplicas: 5
    policy: apa
    apa: {windowSeconds: 5, syncPeriodSeconds: 0.3}
    scrapeIntervalSeconds: 0.2
"""


def test_check_prints_each_target(tmp_path, capsys):
    path = tmp_path / "scaler.yaml"
    path.write_text(GOOD)
    assert main(["check", "--config", str(path)]) == 0
    assert capsys.readouterr().out == (
        "llama: apa on Deployment llm/llama: vllm:num_requests_running (engine, per-pod) "
        "target 10 per replica, replicas [1, 5], every 0.3 s\n"
    )


CLI_ERRORS = [
    # (argv builder, exit code, stderr start)
    (lambda d: ["check", "--config", str(d / "missing.yaml")], 1, "error: "),
    (lambda d: ["check", "--config", str(d / "bad.yaml")], 1, "error: "),
    (lambda d: ["run", "--config", str(d / "good.yaml")], 2, "error: no Kubernetes API to talk to"),
    (lambda d: ["run", "--config", str(d / "good.yaml"), "--api-url", "http://127.0.0.1:1",
                "--metrics-port", "70000"], 2, "error: --metrics-port 70000 is not a port"),
    (lambda d: ["run", "--config", str(d / "good.yaml"), "--kubeconfig", str(d / "no-kubeconfig")], 1,
     "error: cannot load Kubernetes credentials from kubeconfig "),
]


@pytest.mark.parametrize(("argv", "code", "start"), CLI_ERRORS)
def test_cli_errors(tmp_path, capsys, monkeypatch, argv, code, start):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(GOOD.replace("per-pod", "per-replica"))
    assert main(argv(tmp_path)) == code
    err = capsys.readouterr().err
    assert err.startswith(start), err
    assert "Traceback" not in err


async def _run_scaler(*args: str, timeout_s: float) -> tuple[int | None, str, str]:
    """Run ``aibrix-scaler ARGS`` to its end (killed after ``timeout_s``): exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime_components.scaler.cli", *args,
        cwd=str(Path(__file__).resolve().parents[2]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


def test_run_subprocess_scales_the_fake_deployment(tmp_path):
    config_path = tmp_path / "scaler.yaml"
    config_path.write_text(GOOD)

    async def scenario():
        async with contextlib.AsyncExitStack() as stack:
            cluster = FakeKubeApi()
            api_url = await stack.enter_async_context(serve(cluster.app()))
            engine_url = await stack.enter_async_context(serve(metrics_app({"vllm:num_requests_running": 40.0})))
            cluster.add_workload(Workload("llm", "llama", {"model.aibrix.ai/name": "llama"}, 1))
            cluster.put_pod(pod_object("llama-0", {"model.aibrix.ai/name": "llama",
                                                   "model.aibrix.ai/port": engine_url.rsplit(":", 1)[1]},
                                       namespace="llm", ip="127.0.0.1"))
            code, _, err = await _run_scaler("run", "--config", str(config_path), "--api-url", api_url,
                                             "--metrics-port", "0", "--duration", "6", timeout_s=60)
            return cluster, code, err
    cluster, code, err = asyncio.run(scenario())
    assert code == 0, err
    assert cluster.workloads[("llm", "llama")].replicas == 4, err
    # APA doubles at most per decision: 1 -> 2 -> 4 (need ceil(40 / 10)).
    assert "apa: 1 -> 2 replicas (above-band)" in err and "apa: 2 -> 4 replicas (above-band)" in err


RAMP_ERRORS = ["0:4,0:8", "x:4", "5", "0:-1"]


@pytest.mark.parametrize("text", RAMP_ERRORS)
def test_local_ramp_errors(text):
    from runtime_components.scaler.config import ConfigError
    from runtime_components.scaler.local.runner import parse_ramp

    with pytest.raises(ConfigError) as caught:
        parse_ramp(text)
    assert str(caught.value).startswith(f"error: --ramp {text!r}: bad step ")
    assert "expected: SECONDS:CLIENTS pairs with increasing seconds" in str(caught.value)


def test_parse_ramp():
    from runtime_components.scaler.local.runner import parse_ramp

    assert parse_ramp("0:4, 60:16,150:4") == [(0.0, 4), (60.0, 16), (150.0, 4)]


@pytest.mark.slow
def test_local_command_scales_engine_processes(tmp_path):
    """The documented one-command local run: engine_sim processes behind the local API."""
    config_path = tmp_path / "local.yaml"
    config_path.write_text(GOOD.replace("name: llama\n", "name: llama-3-8b\n")
                           .replace("{name: llama, namespace: llm}", "{name: llama-3-8b, namespace: llm}")
                           .replace("model.aibrix.ai/name: llama}", "model.aibrix.ai/name: llama-3-8b}")
                           .replace("target: 10", "target: 4")
                           .replace("    metric: {name: 'vllm:num_requests_running', source: engine, aggregation: per-pod}",
                                    "    metric: {name: 'vllm:num_requests_running', sumWith: ['vllm:num_requests_waiting'],"
                                    " source: engine, aggregation: per-pod}"))

    code, out, err = asyncio.run(_run_scaler("local", "--config", str(config_path), "--startup-delay", "0.5",
                                             "--ramp", "0:8", "--duration", "20", timeout_s=90))
    assert code == 0, err[-2000:]
    assert "replicas spec 2 ready 2" in out, out[-2000:]
    assert out.splitlines()[-1].startswith("done: ")
