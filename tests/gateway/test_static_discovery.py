"""Static discovery: the endpoints file, its errors, and noticing edits."""

import os

import pytest

from runtime_components.gateway.discovery import EndpointsFileError, StaticDiscovery, load_endpoints_file

BAD = [
    ("endpoints: 3", 'expected a mapping with an "endpoints" list'),
    ("endpoints: [{address: 1.2.3.4, model: m}]", 'address "1.2.3.4" is not ip:port'),
    ("endpoints: [{address: '1.2.3.4:99999', model: m}]", "is not ip:port"),
    ("endpoints: [{address: '1.2.3.4:80', model: x}]", 'model "x" is not served by this gateway; models: m'),
    ("endpoints: [{address: '1.2.3.4:80', model: m, weight: 2}]", "unknown field(s) weight"),
    ("endpoints: [{address: '1.2.3.4:80', model: m}, {address: '1.2.3.4:80', model: m}]", "listed twice"),
    ("endpoints: [{address: '1.2.3.4:80', model: m, adapters: sql}]", "adapters must be a list"),
    ('[{"host": "127.0.0.1", "model": "m"}]', "[0]: a list entry needs host, port and model"),
    ("endpoints: []\nendpoints: []", "eps.yaml:2:1: endpoints\n  duplicate key `endpoints`"),
    ("endpoints: [", "eps.yaml:1:13\n  YAML syntax error: expected the node content, but found '<stream end>'"),
]


@pytest.mark.parametrize("text,fragment", BAD)
def test_bad_endpoint_files(tmp_path, text, fragment):
    path = tmp_path / "eps.yaml"
    path.write_text(text)
    with pytest.raises(EndpointsFileError) as info:
        load_endpoints_file(str(path), {"m"})
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_engine_sim_endpoints_file_is_accepted(tmp_path):
    path = tmp_path / "engines.json"
    path.write_text('[{"index": 0, "url": "http://127.0.0.1:9001", "host": "127.0.0.1", "port": 9001, "model": "m"},'
                    ' {"index": 1, "url": "http://127.0.0.1:9002", "host": "127.0.0.1", "port": 9002, "model": "m"}]')
    assert [(e.address, e.pod, e.model) for e in load_endpoints_file(str(path), {"m"})] == [
        ("127.0.0.1:9001", "engine-0", "m"), ("127.0.0.1:9002", "engine-1", "m")]


def test_empty_file_means_no_endpoints(tmp_path):
    path = tmp_path / "eps.yaml"
    path.write_text("")
    assert load_endpoints_file(str(path), {"m"}) == []


def test_poll_publishes_changes_and_keeps_last_good_list(tmp_path):
    path = tmp_path / "eps.yaml"
    path.write_text("endpoints: [{address: '10.0.0.1:80', model: m, pod: a, adapters: [sql]}]\n")
    published = []
    discovery = StaticDiscovery(str(path), {"m"}, published.append)
    discovery.load()
    assert [(e.address, e.pod, e.adapters) for e in published[-1]] == [("10.0.0.1:80", "a", frozenset({"sql"}))]
    assert discovery.poll() is False  # unchanged
    path.write_text("endpoints: [{address: '10.0.0.1:80', model: m}, {address: '10.0.0.2:80', model: m}]\n")
    os.utime(path, (5, 5))
    assert discovery.poll() is True
    assert [e.address for e in published[-1]] == ["10.0.0.1:80", "10.0.0.2:80"]
    path.write_text("endpoints: [{address: nope, model: m}]\n")
    os.utime(path, (6, 6))
    assert discovery.poll() is False and len(published) == 2
    assert "is not ip:port" in (discovery.last_error or "")
