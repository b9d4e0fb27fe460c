"""Two sidecars, each next to a simulated engine speaking vLLM's runtime-LoRA API over HTTP,
agree on who holds which adapter, and move adapters when a pod leaves."""

from __future__ import annotations

import json

from aibrix_spec.components.sidecar import SidecarConfig
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.sidecar.daemon import Sidecar
from runtime_components.sidecar.engine_client import EngineClient
from runtime_components.sidecar.placement import AdapterDemand, place_adapters
from runtime_components.sidecar.pods import StaticPods
from tests.engine_sim.helpers import with_cluster

ADAPTERS = [{"name": f"lora-{i}", "uri": f"file:///adapters/lora-{i}", "replicas": 2 if i == 0 else 1} for i in range(5)]


def test_sidecars_place_adapters_on_real_http_engines(tmp_path):
    pods_file = tmp_path / "pods.json"
    pods_file.write_text(json.dumps({"pods": ["pod-0", "pod-1"]}))
    config = SidecarConfig.model_validate(
        {"model": "llama-3-8b", "maxLoras": 3, "adapters": ADAPTERS, "pods": {"kind": "static", "staticFile": str(pods_file)}}
    )

    async def body(cluster, session):
        urls = [e["url"] for e in cluster.endpoints()]
        engines = [EngineClient(url, session=session) for url in urls]
        sidecars = [
            Sidecar(config, pod_name=f"pod-{i}", engine=engines[i], pods=StaticPods(pods_file)) for i in range(2)
        ]
        for sidecar in sidecars:
            assert (await sidecar.run_once()).converged
        expected = place_adapters([AdapterDemand(a["name"], a["replicas"]) for a in ADAPTERS], ["pod-0", "pod-1"], 3)
        for i, engine in enumerate(engines):
            assert sorted(await engine.loaded_adapters()) == list(expected.per_pod[f"pod-{i}"])
        held = [set(await e.loaded_adapters()) for e in engines]
        assert "lora-0" in held[0] and "lora-0" in held[1]  # two replicas, on both pods
        assert len(set().union(*held)) == 5  # 6 slots, 6 replicas wanted: every adapter somewhere

        # pod-1 leaves: pod-0 now holds what fits its 3 slots; the rest is reported unplaced
        pods_file.write_text(json.dumps({"pods": ["pod-0"]}))
        report = await sidecars[0].run_once()
        alone = place_adapters([AdapterDemand(a["name"], a["replicas"]) for a in ADAPTERS], ["pod-0"], 3)
        assert sorted(await engines[0].loaded_adapters()) == list(alone.per_pod["pod-0"])
        assert report.holding == alone.per_pod["pod-0"]
        assert sum(sidecars[0].unplaced.values()) == 3  # lora-0 lost a replica, two adapters no slot

    with_cluster(body, [EngineConfig(max_loras=3, lora_load_s=0.05)] * 2, speedup=10.0)
