"""The engine's runtime-LoRA HTTP API, as vLLM serves it with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``:

- ``GET /v1/models``: the base model and every loaded adapter (an adapter's ``parent`` is
  the base model's id);
- ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}``: 200 on success; 400/404 with an
  OpenAI-style error body when the adapter cannot be loaded;
- ``POST /v1/unload_lora_adapter {"lora_name"}``.

Errors are classified so the reconciler knows what to retry: a 4xx answer is the engine's
verdict on the adapter (``AdapterRejected``, permanent until the declaration changes);
a 5xx, a timeout or a refused connection is ``EngineUnavailable`` (transient).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

__all__ = ["EngineClient", "AdapterRejected", "EngineUnavailable"]


class EngineUnavailable(Exception):
    """The engine did not answer, or answered 5xx: worth retrying later."""


class AdapterRejected(Exception):
    """The engine refused the request (4xx): retrying the same call will not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"engine answered {status}: {message}")
        self.status = status
        self.message = message


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message", err))[:300]
        return str(data.get("message", err))[:300]
    return body.strip()[:300]


class EngineClient:
    """Talks to one engine at ``base_url`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> EngineClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, self.base_url + path, json=payload) as resp:
                body = await resp.text()
                if resp.status >= 500:
                    raise EngineUnavailable(f"{method} {path}: engine answered {resp.status}: {_error_text(body)}")
                if resp.status >= 400:
                    raise AdapterRejected(resp.status, _error_text(body))
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def loaded_adapters(self) -> dict[str, str]:
        """Adapters the engine holds now: name -> the path it was loaded from (or the name)."""
        body = await self._request("GET", "/v1/models")
        try:
            models = json.loads(body)["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineUnavailable(f"GET /v1/models: not an OpenAI model list: {body[:200]!r}") from exc
        return {
            str(m["id"]): str(m.get("root") or m["id"])
            for m in models
            if isinstance(m, dict) and m.get("parent")
        }

    async def load(self, name: str, path: str) -> None:
        await self._request("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})

    async def unload(self, name: str) -> None:
        await self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
