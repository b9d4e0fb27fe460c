"""The PromQL reader the dashboard checks rely on: selectors, their labels, grouping labels."""

from __future__ import annotations

import pytest

from compiler.promql import PromQLError, Selector, read_query


@pytest.mark.parametrize(
    "expr, selectors, grouping",
    [
        ("up", [Selector("up", ())], []),
        ('vllm:num_requests_running{namespace="a",model_name="m"}',
         [Selector("vllm:num_requests_running", ("namespace", "model_name"))], []),
        ('sum by (le, policy) (rate(x_bucket{ns="a"}[$__rate_interval]))', [Selector("x_bucket", ("ns",))], ["le", "policy"]),
        ('histogram_quantile(0.99, sum by (le) (rate(h_bucket{a="1"}[5m])))', [Selector("h_bucket", ("a",))], ["le"]),
        ('(count(count by (pod) (m{p="x"})) or vector(0)) * 2.5 + 1e3',
         [Selector("m", ("p",))], ["pod"]),
        ('a{x=~"5..|aborted",y!="b"} / on (k) group_left (j) b', [Selector("a", ("x", "y")), Selector("b", ())], ["k", "j"]),
        ('max by (node) (s{n="a"}) > 0 and bool t', [Selector("s", ("n",)), Selector("t", ())], ["node"]),
        ('sum without (pod) (m{l="a,}b"})', [Selector("m", ("l",))], ["pod"]),
        ("sum(rate(a[1m])) unless sum(b) group_left c", [Selector("a", ()), Selector("b", ()), Selector("c", ())], []),
    ],
)
def test_reads_selectors_and_grouping(expr: str, selectors: list[Selector], grouping: list[str]) -> None:
    query = read_query(expr)
    assert list(query.selectors) == selectors
    assert list(query.grouping) == grouping


@pytest.mark.parametrize(
    "expr, message",
    [
        ('{__name__="up"}', "without a metric name"),
        ("sum(rate(a[1m])", "unbalanced parentheses"),
        ("sum(a))", "unbalanced ')'"),
        ('a{b="c"', "unclosed matcher list"),
        ("a{b}", 'expected label op "value"'),
        ("sum by (a", "unclosed label list"),
        ("a # b", "unexpected character '#'"),
    ],
)
def test_refuses_what_it_cannot_read(expr: str, message: str) -> None:
    with pytest.raises(PromQLError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_query(expr)
