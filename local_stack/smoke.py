"""``aibrix-local smoke``: every model and adapter answers through Envoy, and metrics moved.

Where it sits: runs against a :class:`~local_stack.runner.LocalRun` that is up. Each check is
one row (what, where, ok, detail); the command prints them as a table and exits 0 only when
every row is ok.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .metrics import engine_generation_tokens, fetch, total
from .runner import LocalRun
from .supervisor import http_ok

__all__ = ["Check", "format_checks", "run_smoke"]


@dataclass(frozen=True)
class Check:
    what: str
    target: str
    ok: bool
    detail: str


def _post(run: LocalRun, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = {"content-type": "application/json"}
    if run.api_key:
        headers["authorization"] = f"Bearer {run.api_key}"
    request = urllib.request.Request(f"{run.base_url}{path}", data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.load(exc)
        except ValueError:
            return exc.code, {}
        finally:
            exc.close()
    except (OSError, ValueError) as exc:
        return 0, {"error": {"message": str(exc)}}


def _answer(status: int, body: dict[str, Any], field: str) -> tuple[bool, str]:
    if status != 200:
        return False, f"HTTP {status}: {str(body.get('error', {}).get('message', body))[:120]}"
    choices = body.get("choices") or [{}]
    text = choices[0].get("message", {}).get("content") if field == "message" else choices[0].get("text")
    tokens = body.get("usage", {}).get("completion_tokens") or 0
    # A tiny random model may generate tokens that decode to nothing; the tokens still count.
    if text is None or (not text and tokens < 1):
        return False, "HTTP 200 without generated text or tokens"
    return True, f"{tokens} tokens"


def _eventually(read: Callable[[], float], above: float, timeout_s: float = 5.0) -> float:
    """``read()`` once it exceeds ``above`` (counters land just after the answer), else its last value."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while value <= above and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def _models_listed(run: LocalRun, names: set[str]) -> Check:
    request = urllib.request.Request(f"{run.base_url}/models",
                                     headers={"authorization": f"Bearer {run.api_key}"} if run.api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            listed = {m["id"] for m in json.load(resp).get("data", [])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Check("GET /v1/models", "envoy", False, str(exc)[:120])
    missing = sorted(names - listed)
    return Check("GET /v1/models", "envoy", not missing, f"missing {', '.join(missing)}" if missing else f"{len(listed)} listed")


def _scaler_check(run: LocalRun) -> Check:
    """The scaler reads the stand-in API: it reports current replicas for every local target."""
    assert run.scaler_metrics_url is not None
    targets = {g.name for g in run.stack.engines if g.scaled}

    def seen() -> float:
        samples = fetch(run.scaler_metrics_url or "")
        return float(len({ls.get("target") for n, ls, _ in samples if n == "aibrix_scaler_current_replicas"} & targets))

    count = _eventually(seen, len(targets) - 1, timeout_s=10.0)
    return Check("scaler sees its workloads", "scaler", count == len(targets),
                 f"current replicas reported for {count:g}/{len(targets)} targets")


def _paired_checks(run: LocalRun, gateway_url: str) -> list[Check]:
    """A disaggregated model: a prompt of minPromptTokens goes prefill pod, then decode pod."""
    checks = []
    for model in run.stack.gateway.get("models", []):
        pd = model.get("disaggregation")
        if not pd:
            continue
        name = model["name"]

        def paired(name: str = name) -> float:
            return total(fetch(gateway_url), "aibrix_gateway_pd_requests_total", model=name, path="disaggregated")

        before = paired()
        words = int(pd.get("minPromptTokens", 512)) + 16  # the approximate tokenizer: a word is at least a token
        status, body = _post(run, "/completions", {"model": name, "prompt": " ".join(["word"] * words), "max_tokens": 8})
        ok, detail = _answer(status, body, "text")
        after = _eventually(paired, before)
        if ok and after <= before:
            ok, detail = False, "answered, but not through a prefill pod (aibrix_gateway_pd_requests_total did not move)"
        checks.append(Check("prefill then decode", name, ok, detail if not ok else f"{words}-word prompt paired"))
    return checks


def run_smoke(run: LocalRun) -> list[Check]:
    """Send requests to every model and adapter through Envoy and check what moved."""
    checks: list[Check] = []
    models: dict[str, list[str]] = {}  # model -> engine addresses
    adapters: dict[str, str] = {}  # adapter -> its model
    dialects: dict[str, str] = {}
    for group in run.stack.engines:
        models.setdefault(group.model, [])
        dialects[group.model] = group.dialect
        for adapter in group.adapters:
            adapters[adapter] = group.model
    for endpoints in run.engines.values():
        for endpoint in endpoints:
            models[endpoint["model"]].append(endpoint["address"])
    gateway_url = f"{run.gateway_http}/metrics"
    routes = {r["name"]: [t["model"] for t in r["targets"]] for r in (run.stack.routes or {}).get("routes", [])}
    checks.append(_models_listed(run, set(models) | set(adapters) | set(routes)))
    for model, addresses in sorted(models.items()):
        def answered(model: str = model) -> float:
            return total(fetch(gateway_url), "aibrix_gateway_requests_total", model=model, status="200")

        def generated(model: str = model, addresses: list[str] = addresses) -> float:
            return sum(engine_generation_tokens(a, dialects[model]) for a in addresses)

        gw_before, eng_before = answered(), generated()
        status, body = _post(run, "/chat/completions", {"model": model, "max_tokens": 8,
                                                        "messages": [{"role": "user", "content": "Say hello."}]})
        checks.append(Check("chat completion", model, *_answer(status, body, "message")))
        status, body = _post(run, "/completions", {"model": model, "prompt": "The capital of France is", "max_tokens": 8})
        checks.append(Check("completion", model, *_answer(status, body, "text")))
        gw_after = _eventually(answered, gw_before + 1)
        checks.append(Check("gateway metrics moved", model, gw_after >= gw_before + 2,
                            f"aibrix_gateway_requests_total{{status=200}} +{gw_after - gw_before:g}"))
        eng_after = _eventually(generated, eng_before)
        checks.append(Check("engine metrics moved", model, eng_after > eng_before,
                            f"generation tokens +{eng_after - eng_before:g} over {len(addresses)} engine(s)"))
    checks += _paired_checks(run, gateway_url)
    for adapter, model in sorted(adapters.items()):
        status, body = _post(run, "/completions", {"model": adapter, "prompt": "SELECT", "max_tokens": 8})
        ok, detail = _answer(status, body, "text")
        checks.append(Check("adapter completion", f"{adapter} ({model})", ok, detail))
    for route, targets in sorted(routes.items()):
        # Enough requests that a non-sticky split reaches every target; each answer must come
        # from one of the route's targets (the gateway rewrites the body's model to it).
        served: set[str] = set()
        ok, detail = True, ""
        for _ in range(4 * len(targets)):
            status, body = _post(run, "/completions", {"model": route, "prompt": "Hello", "max_tokens": 4})
            ok, detail = _answer(status, body, "text")
            if not ok:
                break
            served.add(str(body.get("model", "")))
        if ok and not served <= set(targets):
            ok, detail = False, f"answered by {sorted(served)}, not the targets {targets}"
        checks.append(Check("route completion", f"{route} -> {', '.join(targets)}", ok,
                            detail if not ok else f"served by {', '.join(sorted(served))}"))
    if run.optimizer_url is not None:
        checks.append(Check("optimizer /metrics", "optimizer", http_ok(run.optimizer_url), run.optimizer_url))
    if run.scaler_metrics_url is not None:
        checks.append(_scaler_check(run))
    if run.kv_metrics_url is not None:
        checks.append(Check("kv pool /metrics", "kv-pool", http_ok(run.kv_metrics_url), run.kv_metrics_url))
    for line in run.check_components():
        checks.append(Check("component still running", line.split(" ", 1)[0], False, line))
    return checks


def format_checks(checks: list[Check]) -> str:
    rows = [("check", "target", "result", "detail")] + [
        (c.what, c.target, "ok" if c.ok else "FAIL", c.detail) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)
