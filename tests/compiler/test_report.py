"""``aibrix-compile explain --format html``: every example renders a page with its models, pools,
GPU counts, costs, components and choices; strings from the stack are escaped; no JavaScript."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from compiler.cli import main
from compiler.explain import explain_table, model_costs
from compiler.pipeline import resolve_stack
from compiler.plan import plan
from compiler.report import DEFAULT_REASONS, pool_gpus, report_context

from .helpers import EXAMPLES, MINIMAL

VOID = {"meta", "br", "img", "hr", "link", "input"}


class Structure(HTMLParser):
    """Every tag closed in order; collects the text and the tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if any(name.startswith("on") for name, _ in attrs):
            self.errors.append(f"event handler on <{tag}>")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def page_of(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["explain", str(path), "--format", "html"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out


def planned(text: str):
    doc, resolved = resolve_stack(text, source_name="t.yaml")
    return plan(resolved, kube_version=(1, 33)), doc.data


def cells(page: str) -> list[list[str]]:
    """Table rows as their cells' text."""
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_renders_its_content(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = page_of(path, capsys)
    parsed = Structure()
    parsed.feed(page)
    assert parsed.errors == [] and parsed.stack == []
    assert "script" not in parsed.tags and "figure" in parsed.tags
    plan_, raw = planned(path.read_text(encoding="utf-8"))
    rows = cells(page)
    for m in plan_.models:
        at_min, at_max = model_costs(m)
        row = next(r for r in rows if r and r[0] == m.name)
        assert row[1] == m.served_name and row[2] == m.engine
        assert row[-2:] == [f"{at_min:.2f}", f"{at_max:.2f}"]
        for adapter in (m.adapters.adapters if m.adapters else ()):
            assert adapter.name in row[4]
    total = next(line for line in explain_table(plan_).splitlines() if line.startswith("TOTAL")).split()
    assert rows_total(rows)[-2:] == total[-2:]  # the page's totals are the table's
    for p in plan_.pools:
        assert any(r and r[0] == p.name and r[2] == f"{p.cost_per_gpu_hour:.2f}" for r in rows), p.name
    for c in report_context(plan_, raw)["components"]:
        assert any(r and r[0] == c["name"] for r in rows), c["name"]
    assert f"Stack <code>{plan_.stack_name}</code>" in page


def rows_total(rows: list[list[str]]) -> list[str]:
    return next(r for r in rows if r and r[0] == "total")


def test_pool_gpus_priced_are_the_explain_costs() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        plan_, _ = planned(path.read_text(encoding="utf-8"))
        prices = {p.name: p.cost_per_gpu_hour for p in plan_.pools}
        for m in plan_.models:
            low, high = pool_gpus(m)
            assert sum(g * prices[p] for p, g in low.items()) == pytest.approx(model_costs(m)[0]), (path.stem, m.name)
            assert sum(g * prices[p] for p, g in high.items()) == pytest.approx(model_costs(m)[1]), (path.stem, m.name)


def test_production_pools_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    rows = cells(page_of(EXAMPLES / "production.yaml", capsys))
    # at min: llama-3-8b 2 x 1 on l20 (cheapest), qwen 1 x 1 on l20, 70b 1 x 8 on h100
    # at max: llama-3-8b 16 x 1 on h100 (dearest), qwen 8 x 1 on l20, 70b 4 x 8 on h100
    assert next(r for r in rows if r and r[0] == "l20")[3:5] == ["3", "8"]
    assert next(r for r in rows if r and r[0] == "h100")[3:5] == ["8", "48"]
    choices = {(r[0], r[1]): r for r in rows if len(r) == 5}
    assert choices[("llama-3-8b", "routing.policy")][2:4] == ["prefix-cache-aware:2,least-request", "set in the stack"]
    assert choices[("qwen2-5-7b", "routing.policy")][2:5] == ["least-request", "default", DEFAULT_REASONS["routing.policy"]]
    assert choices[("stack", "kvCache.blockSizeTokens")][2:4] == ["16", "default"]
    assert choices[("stack", "kvCache.eviction")][2:4] == ["adaptive", "set in the stack"]
    assert choices[("llama-3-70b", "autoscaling.policy")][2:4] == ["kpa", "set in the stack"]


def test_strings_from_the_stack_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = copy.deepcopy(MINIMAL)
    data["spec"]["models"][0]["source"] = {"uri": "s3://bucket/<script>alert(1)</script>&co/w"}
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(data))
    page = page_of(path, capsys)
    assert "<script>" not in page
    assert "s3://bucket/&lt;script&gt;alert(1)&lt;/script&gt;&amp;co/w" in page
