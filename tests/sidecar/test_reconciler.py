"""The reconcile pass against a fake engine with vLLM's runtime-LoRA semantics."""

from __future__ import annotations

import asyncio

import pytest

from runtime_components.sidecar.engine_client import AdapterRejected, EngineUnavailable
from runtime_components.sidecar.reconciler import Reconciler, RetryPolicy


class FakeEngine:
    """Holds adapters; paths in ``bad_paths`` are rejected (4xx); ``down`` makes every call fail."""

    def __init__(self, held=None, bad_paths=(), limit=4):
        self.held = dict(held or {})
        self.bad_paths = set(bad_paths)
        self.limit = limit
        self.down = False
        self.calls: list[tuple[str, str]] = []

    async def loaded_adapters(self):
        if self.down:
            raise EngineUnavailable("connection refused")
        return dict(self.held)

    async def load(self, name, path):
        self.calls.append(("load", name))
        if self.down:
            raise EngineUnavailable("connection refused")
        if path in self.bad_paths:
            raise AdapterRejected(404, f"no adapter at {path}")
        assert len(self.held) < self.limit, "reconciler exceeded the engine's adapter limit"
        self.held[name] = path

    async def unload(self, name):
        self.calls.append(("unload", name))
        if name not in self.held:
            raise AdapterRejected(404, "not loaded")
        del self.held[name]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_unloads_before_loading_so_the_limit_holds():
    engine = FakeEngine(held={"old-a": "/a", "old-b": "/b"}, limit=2)
    rec = Reconciler(engine, max_loras=2, clock=Clock())
    report = run(rec.reconcile({"new-a": "/na", "new-b": "/nb"}))
    assert engine.calls[:2] == [("unload", "old-a"), ("unload", "old-b")]
    assert report.holding == ("new-a", "new-b") and report.converged


def test_reports_no_slot_when_desired_exceeds_the_limit():
    engine = FakeEngine(limit=1)
    report = run(Reconciler(engine, max_loras=1, clock=Clock()).reconcile({"a": "/a", "b": "/b"}))
    assert report.loaded == ("a",) and report.no_slot == ("b",) and not report.converged


def test_a_rejected_adapter_backs_off_then_is_given_up_and_reported():
    engine = FakeEngine(bad_paths={"/bad"})
    clock = Clock()
    rec = Reconciler(engine, max_loras=4, retry=RetryPolicy(base_delay_s=1, max_delay_s=8, max_attempts=3), clock=clock)
    desired = {"good": "/good", "broken": "/bad"}
    first = run(rec.reconcile(desired))
    assert first.loaded == ("good",) and "broken" in first.waiting_retry
    run(rec.reconcile(desired))  # within the backoff: not attempted again
    assert engine.calls.count(("load", "broken")) == 1
    for _ in range(10):
        clock.now += 10
        last = run(rec.reconcile(desired))
    assert engine.calls.count(("load", "broken")) == 3
    assert "gave up after 3 attempts" in last.failed["broken"]
    assert "no adapter at /bad" in last.failed["broken"]


def test_changing_the_declared_path_clears_a_given_up_adapter():
    engine = FakeEngine(bad_paths={"/bad"})
    clock = Clock()
    rec = Reconciler(engine, max_loras=4, retry=RetryPolicy(max_attempts=1), clock=clock)
    assert "x" in run(rec.reconcile({"x": "/bad"})).failed
    report = run(rec.reconcile({"x": "/fixed"}))
    assert report.loaded == ("x",) and report.converged


def test_engine_down_is_reported_and_changes_nothing():
    engine = FakeEngine(held={"a": "/a"})
    engine.down = True
    report = run(Reconciler(engine, max_loras=4, clock=Clock()).reconcile({}))
    assert report.engine_error and "connection refused" in report.engine_error
    assert engine.held == {"a": "/a"}


def test_transient_load_failures_are_retried_without_giving_up():
    engine = FakeEngine()
    clock = Clock()
    rec = Reconciler(engine, max_loras=4, retry=RetryPolicy(base_delay_s=1, max_attempts=2), clock=clock)
    original = engine.load

    async def flaky(name, path):
        engine.calls.append(("load", name))
        raise EngineUnavailable("503 busy")

    engine.load = flaky
    for _ in range(4):
        clock.now += 100
        report = run(rec.reconcile({"a": "/a"}))
    assert "a" in report.waiting_retry and not report.failed
    engine.load = original
    clock.now += 100
    assert run(rec.reconcile({"a": "/a"})).converged


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)])
def test_backoff_doubles_and_is_capped(attempt, delay):
    assert RetryPolicy(base_delay_s=1, max_delay_s=30).delay(attempt) == delay
