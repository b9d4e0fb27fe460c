"""The load client against simulated engines: records, bounds, errors, report, CLI."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from runtime_components.engine_sim.cluster import EngineCluster
from runtime_components.engine_sim.config import EngineConfig
from runtime_components.engine_sim.faults import Faults
from runtime_components.loadgen.cli import main
from runtime_components.loadgen.client import LoadRecord, replay
from runtime_components.loadgen.report import format_table, latency_stats, percentile, summarize
from runtime_components.loadgen.trace import TraceRequest, write_jsonl


def _trace(n: int, gap_s: float = 0.01, max_tokens: int = 4) -> list[TraceRequest]:
    return [
        TraceRequest(f"r{i}", i * gap_s, "llama-3-8b", f"question number {i} about the data", max_tokens)
        for i in range(n)
    ]


def _run(coro_factory, configs=None, faults=None, speedup: float = 10.0):  # type: ignore[no-untyped-def]
    async def main_() -> object:
        cluster = EngineCluster(list(configs or [EngineConfig()]), speedup=speedup, faults=faults)
        urls = [e["url"] for e in await cluster.start()]
        try:
            return await asyncio.wait_for(coro_factory(urls), 60)
        finally:
            await cluster.stop()

    return asyncio.run(main_())


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_replay_times_every_token(api: str) -> None:
    records, wall = _run(lambda urls: replay(_trace(12), urls, api=api), configs=[EngineConfig()] * 2)
    assert len(records) == 12 and wall > 0
    assert {r.endpoint for r in records} == {records[0].endpoint, records[1].endpoint}
    for r in records:
        assert r.ok, r.error
        assert r.output_tokens == 4 and len(r.itl_s) == 3
        assert 0 < r.ttft_s <= r.e2e_s  # type: ignore[operator]
        assert r.prompt_tokens and r.prompt_tokens > 5


def test_replay_is_bounded_in_count_and_time() -> None:
    records, _ = _run(lambda urls: replay(_trace(50, gap_s=0.1), urls, max_requests=20, duration_s=0.5))
    assert len(records) == 6  # arrivals 0.0 .. 0.5 s of the first 20
    records, _ = _run(lambda urls: replay(_trace(10), urls, time_scale=100.0, max_requests=3))
    assert len(records) == 3


def test_errors_and_timeouts_are_counted_not_raised() -> None:
    records, wall = _run(
        lambda urls: replay(_trace(10), urls), configs=[EngineConfig()] * 2, faults={1: Faults(error_rate=1.0)}
    )
    summary = summarize(records, wall)
    assert summary["errors"] == 5 and summary["completed"] == 5
    assert summary["error_kinds"] == {"HTTP 500": 5}
    records, wall = _run(lambda urls: replay(_trace(2), urls, request_timeout_s=0.2), faults={0: Faults(hang=True)})
    assert [r.error for r in records] == ["timeout after 0.2 s"] * 2


def test_session_and_api_key_travel_as_headers() -> None:
    from aiohttp import web

    seen: list[tuple[str | None, str | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.headers.get("x-session-id"), request.headers.get("Authorization")))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices":[{"text":" hi"}]}\n\ndata: [DONE]\n\n')
        return response

    async def scenario() -> list[LoadRecord]:
        app = web.Application()
        app.add_routes([web.post("/v1/completions", handler)])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            trace = [TraceRequest("a", 0.0, "m", "hello", 1, session_id="s1")]
            return (await replay(trace, [f"http://127.0.0.1:{port}"], api_key="k123"))[0]
        finally:
            await runner.cleanup()

    records = asyncio.run(scenario())
    assert records[0].ok and seen == [("s1", "Bearer k123")]


def test_unreachable_endpoint_is_an_error_record() -> None:
    records, _ = asyncio.run(replay(_trace(1), ["http://127.0.0.1:1"], request_timeout_s=2.0))
    assert records[0].error and records[0].error.startswith("ClientConnectorError")


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([5.0], 50, 5.0), ([1.0, 3.0], 50, 2.0), ([0.0, 1.0, 2.0, 3.0, 4.0], 90, 3.6), ([0.0, 100.0], 99, 99.0)],
)
def test_percentile_interpolates(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_report_numbers_and_table() -> None:
    recs = [
        LoadRecord("a", "u", 0.0, 0.0, ttft_s=0.1, e2e_s=0.5, itl_s=[0.1, 0.1], output_tokens=3),
        LoadRecord("b", "u", 0.0, 0.0, ttft_s=0.3, e2e_s=0.9, itl_s=[0.2], output_tokens=2),
        LoadRecord("c", "u", 0.0, None, error="HTTP 500: boom"),
    ]
    s = summarize(recs, wall_s=2.0)
    assert (s["completed"], s["errors"], s["req_per_s"], s["output_tok_per_s"]) == (2, 1, 1.0, 2.5)
    assert s["ttft_ms"] == {"mean": 200.0, "p50": 200.0, "p90": 280.0, "p99": 298.0}
    assert s["tpot_ms"]["mean"] == pytest.approx(150.0)
    assert latency_stats([]) == {"mean": None, "p50": None, "p90": None, "p99": None}
    table = format_table(s)
    assert "TTFT" in table and "errors 1 {'HTTP 500': 1}" in table
    assert not math.isnan(s["e2e_ms"]["p99"])


def test_cli_replays_a_trace_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.jsonl"
    write_jsonl(_trace(6), trace)

    async def serve_and_load() -> int:
        cluster = EngineCluster([EngineConfig()] * 2, speedup=10.0)
        endpoints = await cluster.start()
        (tmp_path / "eps.json").write_text(json.dumps(endpoints))
        try:
            argv = ["--trace", str(trace), "--endpoints-file", str(tmp_path / "eps.json"),
                    "--json-out", str(tmp_path / "out.json")]  # fmt: skip
            return await asyncio.to_thread(main, argv)
        finally:
            await cluster.stop()

    assert asyncio.run(serve_and_load()) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["completed"] == 6 and json.loads((tmp_path / "out.json").read_text()) == summary


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trace", "{missing}", "--url", "http://x"], "cannot read trace"),
        (["--trace", "{trace}"], "no endpoint given; pass --url URL"),
        (["--trace", "{trace}", "--url", "localhost:8000"], "is not an http(s) URL"),
        (["--trace", "{trace}", "--url", "http://x", "--max-requests", "0"], "--max-requests must be >= 1"),
        (["--trace", "{bad}", "--url", "http://x"], "bad.jsonl:1: not valid JSON"),
        (["--trace", "{trace}", "--endpoints-file", "{bad}"], "not JSON"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    write_jsonl(_trace(1), tmp_path / "t.jsonl")
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    paths = {"trace": tmp_path / "t.jsonl", "bad": tmp_path / "bad.jsonl", "missing": tmp_path / "none.jsonl"}
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
