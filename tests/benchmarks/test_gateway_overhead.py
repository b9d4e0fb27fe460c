"""benchmarks.gateway_overhead's closed loop: a steady window after the warm-up, counted alone."""

from __future__ import annotations

import asyncio

from aiohttp import web

from benchmarks.gateway_overhead import closed_loop


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
