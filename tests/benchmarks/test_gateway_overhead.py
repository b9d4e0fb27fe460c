"""benchmarks.gateway_overhead: the closed loop (a steady window after the warm-up, counted alone) and
the floors it compares the gateway with."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from benchmarks.gateway_overhead import Procs, closed_loop, start_floors, wait_http


async def _serve(hits: list[float], status: int = 200) -> tuple[web.AppRunner, str]:
    """A completions endpoint answering ``status``; ``hits`` gets the time of every request."""
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        hits.append(asyncio.get_running_loop().time())
        return web.json_response({"ok": status == 200}, status=status)

    app = web.Application()
    app.router.add_post("/v1/completions", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


def test_the_warm_up_runs_but_is_not_counted():
    async def main() -> tuple[float, int, int, list[float], float]:
        hits: list[float] = []
        runner, url = await _serve(hits)
        marks: list[float] = []
        try:
            start = asyncio.get_running_loop().time()
            rate, errors = await closed_loop(url, 4, 0.3, warmup_s=0.2,
                                             on_steady=lambda: marks.append(asyncio.get_running_loop().time()))
            took = asyncio.get_running_loop().time() - start
        finally:
            await runner.cleanup()
        return rate, errors, len(hits), marks, took

    rate, errors, served, marks, took = asyncio.run(main())
    assert errors == 0 and len(marks) == 1
    assert took >= 0.5
    counted = rate * (took - 0.2)
    # the server answered the warm-up's requests too; the rate counts only the steady window's
    assert served > counted * 1.1 and counted > 0


def test_without_warm_up_everything_counts():
    async def main() -> tuple[float, int, int, float]:
        hits: list[float] = []
        runner, url = await _serve(hits)
        try:
            start = asyncio.get_running_loop().time()
            rate, errors = await closed_loop(url, 2, 0.3)
            took = asyncio.get_running_loop().time() - start
        finally:
            await runner.cleanup()
        return rate, errors, len(hits), took

    rate, errors, served, took = asyncio.run(main())
    assert errors == 0
    assert abs(rate * took - served) <= max(5, 0.1 * served)


def test_failures_count_in_the_warm_up_too():
    async def main() -> tuple[float, int, int]:
        hits: list[float] = []
        runner, url = await _serve(hits, status=503)
        try:
            rate, errors = await closed_loop(url, 2, 0.1, warmup_s=0.2)
        finally:
            await runner.cleanup()
        return rate, errors, len(hits)

    rate, errors, served = asyncio.run(main())
    assert rate == 0 and errors == served > 0


def test_the_floors_are_envoy_balancing_alone_and_an_ext_proc_server_that_routes_everything_to_one_engine(tmp_path):
    """The two floors route for real: plain Envoy spreads the load over both engines by
    itself; behind the do-nothing ext_proc server every request reaches the first engine."""
    async def main() -> dict[str, tuple[int, int, int]]:
        first: list[float] = []
        second: list[float] = []
        runners = [await _serve(first), await _serve(second)]
        ports = [int(url.rsplit(":", 1)[1]) for _, url in runners]
        procs = Procs()
        counts: dict[str, tuple[int, int, int]] = {}
        try:
            floors = start_floors(procs, tmp_path, ports, workers=1, cores=sorted(os.sched_getaffinity(0)))
            for name in ("envoy-only", "extproc-echo"):
                before = len(first), len(second)
                await wait_http(f"{floors[name]['url']}/v1/completions", method="POST", data=b"{}")
                _, errors = await closed_loop(str(floors[name]["url"]), 4, 0.3)
                counts[name] = (len(first) - before[0], len(second) - before[1], errors)
        finally:
            procs.stop()
            for runner, _ in runners:
                await runner.cleanup()
        return counts

    counts = asyncio.run(main())
    balanced_first, balanced_second, errors = counts["envoy-only"]
    assert errors == 0 and balanced_first > 5 and balanced_second > 5
    echoed_first, echoed_second, errors = counts["extproc-echo"]
    assert errors == 0 and echoed_first > 5 and echoed_second == 0
