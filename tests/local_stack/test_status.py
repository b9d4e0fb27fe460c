"""The live status table reads the gateway's own metrics: replicas up, requests, errors."""

from __future__ import annotations

from local_stack.metrics import parse, total
from local_stack.status import format_status, status_rows

PAGE = """\
# HELP aibrix_gateway_endpoints endpoints
aibrix_gateway_endpoints{model="a",state="up"} 2.0
aibrix_gateway_endpoints{model="a",state="down"} 1.0
aibrix_gateway_endpoints{model="b/c",state="up"} 1.0
aibrix_gateway_requests_total{model="a",policy="random",status="200"} 7.0
aibrix_gateway_requests_total{model="a",policy="none",status="429"} 2.0
aibrix_gateway_requests_total{model="a",policy="random",status="aborted"} 1.0
aibrix_gateway_requests_total{model="b/c",policy="random",status="200"} 3.0
"""


def test_rows_count_up_replicas_requests_and_non_2xx_errors() -> None:
    rows = status_rows(parse(PAGE), ["a", "b/c", "idle"])
    assert rows == [("a", 2, 10, 3), ("b/c", 1, 3, 0), ("idle", 0, 0, 0)]
    assert format_status(rows) == [
        "model  replicas  requests  errors",
        "a             2        10       3",
        "b/c           1         3       0",
        "idle          0         0       0",
    ]


def test_parse_reads_labels_with_escapes_and_skips_comments() -> None:
    samples = parse('x{a="q\\"uote",b="2"} 1.5\n# TYPE x counter\nbroken line\ny 3\n')
    assert samples == [("x", {"a": 'q\\"uote', "b": "2"}, 1.5), ("y", {}, 3.0)]
    assert total(samples, "x", b="2") == 1.5 and total(samples, "x", b="3") == 0
