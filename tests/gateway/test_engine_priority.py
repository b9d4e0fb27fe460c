"""Flow control's engine side: the gateway writes each request's vLLM priority into its body."""

from __future__ import annotations

import asyncio
import json
import time

import yaml

from aibrix_spec.components.gateway import GatewayConfig
from runtime_components.gateway.app import GatewayApp
from runtime_components.gateway.endpoints import EngineSample
from runtime_components.gateway.flow import engine_priority

ADDRESS = "127.0.0.1:7001"
KEYS = {"heavy": "sk-heavy-0123456789", "light": "sk-light-0123456789", "gold": "sk-gold-01234567890"}


def test_higher_bands_first_then_users_under_their_share() -> None:
    assert engine_priority(0, True) == engine_priority(0, None) == 0
    assert engine_priority(0, False) == 1
    assert engine_priority(10, False) < engine_priority(0, True)  # a higher tier outranks any share


def _gateway(tmp_path, *, engine_priority_on: bool) -> GatewayApp:
    (tmp_path / "eps.yaml").write_text(yaml.safe_dump({"endpoints": [{"address": ADDRESS, "model": "m"}]}))
    (tmp_path / "users.yaml").write_text(yaml.safe_dump({"users": [
        {"name": "heavy", "apiKey": KEYS["heavy"], "tier": "free"},
        {"name": "light", "apiKey": KEYS["light"], "tier": "free"},
        {"name": "gold", "apiKey": KEYS["gold"], "tier": "gold"}]}))
    gateway = GatewayApp(GatewayConfig.model_validate({
        "discovery": {"mode": "static", "endpointsFile": str(tmp_path / "eps.yaml")},
        "models": [{"name": "m", "enginePriority": engine_priority_on}],
        "rateLimits": {"usersFile": str(tmp_path / "users.yaml"), "defaultTier": "free", "tiers": {
            "free": {"rpm": 100000, "tpm": 100000000}, "gold": {"rpm": 100000, "tpm": 100000000, "priority": 10}}},
        "flowControl": {"enabled": True, "saturation": {"maxInflightPerEngine": 100, "maxWaitingPerEngine": 64}},
    }))
    gateway.discovery.load()
    gateway.table.record_sample(ADDRESS, EngineSample(running=0.0, waiting=0.0), time.monotonic())
    return gateway


async def _admit(gateway: GatewayApp, user: str) -> dict:
    headers = {"authorization": f"Bearer {KEYS[user]}"}
    body = json.dumps({"model": "m", "prompt": "hello", "max_tokens": 4}).encode()
    admission = await gateway.core.admit(gateway.core.authenticate(headers), "/v1/completions", headers, body)
    return json.loads(admission.body) if admission.body is not None else {}


def test_the_body_carries_the_priority_the_users_share_and_tier_give(tmp_path) -> None:
    gateway = _gateway(tmp_path, engine_priority_on=True)

    async def scenario() -> list[dict]:
        out = [await _admit(gateway, "heavy") for _ in range(4)]  # heavy alone: no share to be over
        out.append(await _admit(gateway, "light"))  # light: 1 of 5 in flight, under its share
        out.append(await _admit(gateway, "heavy"))  # heavy: 5 of 6, over it
        out.append(await _admit(gateway, "gold"))
        return out

    bodies = asyncio.run(scenario())
    assert [b["priority"] for b in bodies] == [0, 0, 0, 0, 0, 1, -20]
    assert all(b["model"] == "m" and b["prompt"] == "hello" and b["max_tokens"] == 4 for b in bodies)


def test_without_engine_priority_the_body_is_left_alone(tmp_path) -> None:
    gateway = _gateway(tmp_path, engine_priority_on=False)
    assert asyncio.run(_admit(gateway, "heavy")) == {}
