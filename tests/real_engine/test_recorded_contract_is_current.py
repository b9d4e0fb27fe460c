"""The recorded vLLM answers the fast suite pins the simulator to are still what vLLM says."""

from __future__ import annotations

import json
import urllib.request

from tests.contracts.families import RECORDED, contract_diff, families, recorded_families


def _post(url: str, payload: dict) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_metric_families_match_the_recording(vllm_pair):
    server = vllm_pair[0]
    status, _ = _post(server.url + "/v1/completions", {"model": "tiny", "prompt": "select users", "max_tokens": 4})
    assert status == 200
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
        live = families(resp.read().decode())
    assert contract_diff(live, recorded_families()) == []


def test_error_shapes_match_the_recording(vllm_pair):
    server = vllm_pair[0]
    status, body = _post(server.url + "/v1/completions", {"model": "nope", "prompt": "x", "max_tokens": 2})
    recorded = json.loads((RECORDED / "error_unknown_model.json").read_text())
    live = json.loads(body)
    assert status == 404 == recorded["error"]["code"]
    assert set(live["error"]) == set(recorded["error"]) and live["error"]["type"] == recorded["error"]["type"]
