"""The sidecar loads and unloads a real adapter in real vLLM, and reports one that fails."""

from __future__ import annotations

import asyncio
import json

from aibrix_spec.components.sidecar import SidecarConfig
from runtime_components.sidecar.daemon import Sidecar
from runtime_components.sidecar.engine_client import EngineClient
from runtime_components.sidecar.pods import StaticPods


def _config(adapters: list[dict], pods_file) -> SidecarConfig:
    return SidecarConfig.model_validate(
        {
            "model": "tiny",
            "maxLoras": 2,
            "adapters": adapters,
            "pods": {"kind": "static", "staticFile": str(pods_file)},
            "retry": {"baseDelaySeconds": 0.01, "maxDelaySeconds": 0.01, "maxAttempts": 2},
        }
    )


def test_sidecar_reconciles_a_real_engine(vllm_pair, tiny_model, tmp_path):
    server = vllm_pair[1]
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps({"pods": ["pod-0"]}))
    lora = f"file://{tiny_model / 'lora'}"

    async def scenario():
        async with EngineClient(server.url) as engine:
            sidecar = Sidecar(
                _config([{"name": "sql", "uri": lora}, {"name": "broken", "uri": "file:///no/such/adapter"}], pods),
                pod_name="pod-0",
                engine=engine,
                pods=StaticPods(pods),
            )
            first = await sidecar.run_once()
            assert first.loaded == ("sql",)
            assert "sql" in await engine.loaded_adapters()
            for _ in range(3):
                await asyncio.sleep(0.05)
                report = await sidecar.run_once()
            assert "broken" in report.failed and "No adapter found" in report.failed["broken"]

            sidecar.config = _config([], pods)
            emptied = await sidecar.run_once()
            assert emptied.unloaded == ("sql",)
            assert await engine.loaded_adapters() == {}

    asyncio.run(scenario())
