"""The config model and loader: valid documents, and one clear message per bad input."""

from __future__ import annotations

import textwrap

import pytest

from runtime_components.scaler.config import ConfigError, parse_config

HEAD = """\
targets:
  - name: llama
    scaleTargetRef: {name: llama, namespace: llm}
"""
ENGINE_METRIC = "    metric: {name: 'vllm:num_requests_running', source: engine, aggregation: per-pod}\n"


def _doc(body: str, metric: str = ENGINE_METRIC, selector: str = "    podSelector: {app: llama}\n") -> str:
    return HEAD + selector + metric + textwrap.indent(textwrap.dedent(body), "    ")


ERROR_CASES = [
    # (name, document, exact message: file:line:col, field path, problem, the line, hint)
    ("aggregation must be stated",
     _doc("target: 8\nmaxReplicas: 4\npolicy: kpa\n",
          metric="    metric: {name: 'vllm:num_requests_running', source: engine}\n"),
     "error: s.yaml:5:13: targets[0].metric.aggregation\n  missing required field `aggregation`\n"
     "      5 |     metric: {name: 'vllm:num_requests_running', source: engine}\n        |             ^\n"
     "  hint: expected per-pod or total"),
    ("engine metric cannot be a total",
     _doc("target: 8\nmaxReplicas: 4\npolicy: kpa\n",
          metric="    metric: {name: 'vllm:num_requests_running', source: engine, aggregation: total}\n"),
     "error: s.yaml:5:57: targets[0].metric.source\n"
     "  metric.source engine reports one value per pod, so metric.aggregation must be per-pod\n"
     "      5 |     metric: {name: 'vllm:num_requests_running', source: engine, aggregation: total}\n"
     "        |                                                         ^"),
    ("optimizer needs its url",
     _doc("target: 1\nmaxReplicas: 4\npolicy: hpa\n",
          metric="    metric: {name: aibrix_optimizer_desired_replicas, source: optimizer, aggregation: total}\n"),
     "error: s.yaml:5:63: targets[0].metric.source\n"
     "  metric.source optimizer needs metric.optimizer.url (the optimizer's /metrics)\n"
     "      5 |     metric: {name: aibrix_optimizer_desired_replicas, source: optimizer, aggregation: total}\n"
     "        |                                                               ^"),
    ("min above max",
     _doc("target: 8\nminReplicas: 5\nmaxReplicas: 4\npolicy: kpa\n"),
     "error: s.yaml:7:18: targets[0].minReplicas\n  minReplicas (5) exceeds maxReplicas (4)\n"
     "      7 |     minReplicas: 5\n        |                  ^"),
    ("zero needs a demand source or kpa scale to zero",
     _doc("target: 8\nminReplicas: 0\nmaxReplicas: 4\npolicy: apa\n"),
     "error: s.yaml:7:18: targets[0].minReplicas\n"
     "  minReplicas 0 needs a demand source (the gateway's held requests wake the workload) or policy kpa "
     "with kpa.scaleToZero: true; otherwise use 1 or more\n"
     "      7 |     minReplicas: 0\n        |                  ^"),
    ("block of another policy",
     _doc("target: 8\nmaxReplicas: 4\npolicy: kpa\napa: {windowSeconds: 30}\n"),
     "error: s.yaml:2:5: targets[0]\n  block `apa` is set but policy is kpa; remove it or change policy\n"
     "      2 |   - name: llama\n        |     ^"),
    ("typo gets a suggestion",
     _doc("target: 8\nmaxReplicas: 4\npolicy: kpa\nkpa: {panicTreshold: 3}\n"),
     "error: s.yaml:9:11: targets[0].kpa.panicTreshold\n  unknown field `panicTreshold`\n"
     "      9 |     kpa: {panicTreshold: 3}\n        |           ^\n  hint: did you mean `panicThreshold`?"),
    ("unknown policy",
     _doc("target: 8\nmaxReplicas: 4\npolicy: vpa\n"),
     "error: s.yaml:8:13: targets[0].policy\n  `vpa` is not allowed here\n"
     "      8 |     policy: vpa\n        |             ^\n  hint: expected one of: 'hpa', 'kpa' or 'apa'"),
    ("panic window longer than stable",
     _doc("target: 8\nmaxReplicas: 4\npolicy: kpa\nkpa: {stableWindowSeconds: 10, panicWindowSeconds: 20}\n"),
     "error: s.yaml:9:56: targets[0].kpa.panicWindowSeconds\n"
     "  kpa.panicWindowSeconds (20.0) must not exceed kpa.stableWindowSeconds (10.0)\n"
     "      9 |     kpa: {stableWindowSeconds: 10, panicWindowSeconds: 20}\n"
     "        |                                                        ^"),
    ("engine source without selector",
     _doc("target: 8\nmaxReplicas: 4\npolicy: kpa\n", selector=""),
     "error: s.yaml:4:57: targets[0].metric.source\n"
     "  metric.source engine needs podSelector (the labels of the workload's pods)\n"
     "      4 |     metric: {name: 'vllm:num_requests_running', source: engine, aggregation: per-pod}\n"
     "        |                                                         ^"),
    ("not a mapping", "- 1\n",
     "error: s.yaml:1:1\n  expected a mapping of ScalerConfig fields at the top\n      1 | - 1\n        | ^\n"
     "  hint: the file needs `targets:` (a list of scaling targets) at the top"),
    ("broken yaml", "targets: [\n",
     "error: s.yaml:2:1\n  YAML syntax error: expected the node content, but found '<stream end>'\n"
     "  hint: check indentation and quoting on this line"),
    ("duplicate key", "targets: []\ntargets: []\n",
     "error: s.yaml:2:1: targets\n  duplicate key `targets`\n      2 | targets: []\n        | ^\n"
     "  hint: keep one; YAML would silently use the last"),
]


@pytest.mark.parametrize(("name", "document", "message"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_config_errors(name, document, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(document, source="s.yaml")
    assert str(caught.value) == message


def test_defaults_are_each_policys_own():
    cfg = parse_config(_doc("target: 8\nmaxReplicas: 4\npolicy: kpa\n"), source="s.yaml")
    target = cfg.targets[0]
    assert (target.kpa.stable_window_seconds, target.kpa.panic_window_seconds, target.kpa.panic_threshold) == (60, 6, 2)
    assert (target.hpa.tolerance, target.hpa.scale_down_stabilization_seconds, target.hpa.sync_period_seconds) == (
        0.1, 300, 15)
    assert (target.apa.up_fluctuation_tolerance, target.apa.down_fluctuation_tolerance) == (0.1, 0.2)
    assert target.sync_period_seconds == 2
    assert target.metric.engine_source.port == 8000


def test_optimizer_source_document():
    doc = _doc(
        "target: 1\nmaxReplicas: 6\npolicy: apa\n",
        metric=("    metric: {name: aibrix_optimizer_desired_replicas, source: optimizer, aggregation: total,\n"
                "             optimizer: {url: 'http://optimizer.llm:8080/metrics', labels: {model: llama, pool: l20}}}\n"),
        selector="",
    )
    target = parse_config(doc, source="s.yaml").targets[0]
    assert target.metric.optimizer is not None
    assert target.metric.optimizer.labels == {"model": "llama", "pool": "l20"}


def test_duplicate_target_names():
    body = _doc("target: 8\nmaxReplicas: 4\npolicy: kpa\n")
    second = body.split("targets:\n", 1)[1]
    with pytest.raises(ConfigError) as caught:
        parse_config(body + second, source="s.yaml")
    assert str(caught.value) == (
        "error: s.yaml:2:3: targets\n  targets: duplicate name 'llama'; each target needs its own name\n"
        "      2 |   - name: llama\n        |   ^"
    )
