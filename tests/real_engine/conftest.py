"""Fixtures of the real-engine stage. Every test here needs the real-engine environment;
without ``AIBRIX_REAL_ENGINE_PYTHON`` (set by ``bash scripts/test-real-engine``) they skip.

Test order: every test that does not use ``vllm_pair`` runs first (see
``pytest_collection_modifyitems``), so a module that starts its own instances has stopped
them before the session's pair starts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .vllm_process import VllmServer

HERE = Path(__file__).resolve().parent
PYTHON = os.environ.get("AIBRIX_REAL_ENGINE_PYTHON", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PYTHON:
        # Tests that start their own engines (e.g. the KV pool's connector-enabled pair) run
        # before the shared pair starts, so at most two vLLM instances (~3 GB each) live at once.
        items.sort(key=lambda item: "vllm_pair" in getattr(item, "fixturenames", ()))
        return
    skip = pytest.mark.skip(reason="real vLLM not set up; run: bash scripts/test-real-engine")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Llama and its LoRA adapter, built once per test session, offline."""
    out = tmp_path_factory.mktemp("tiny")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HOME=str(out), TMPDIR=str(out))
    subprocess.run([PYTHON, str(HERE / "tiny_model.py"), str(out)], check=True, env=env, timeout=300)
    return out


@pytest.fixture(scope="session")
def vllm_pair(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[VllmServer]]:
    """Two real vLLM instances of the tiny model (prefix caching and runtime LoRA on)."""
    servers = [
        VllmServer(PYTHON, tiny_model / "model", tmp_path_factory.mktemp(f"vllm{i}"))
        for i in range(2)
    ]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
