"""Weighted routes: the split, stickiness, weight changes, the routes file and its reload."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from aibrix_spec.traffic import RouteSpec
from compiler.pipeline import compile_stack
from runtime_components.gateway.policy.state import RoutingState
from runtime_components.gateway.routes import RoutesFileError, RouteTable, load_routes
from runtime_components.gateway.users import ANONYMOUS, User

REPO = Path(__file__).resolve().parents[2]


def _route(weights: dict[str, float], sticky: str = "none") -> RouteSpec:
    return RouteSpec.model_validate(
        {"name": "chat", "sticky": sticky, "targets": [{"model": m, "weight": w} for m, w in weights.items()]}
    )


def _table(*routes: RouteSpec) -> RouteTable:
    table = RouteTable(RoutingState())
    table.replace(list(routes))
    return table


def test_a_non_sticky_split_is_exact_in_every_window() -> None:
    table = _table(_route({"v1": 95, "v2": 5}))
    picks = [table.pick("chat", ANONYMOUS, {}) for _ in range(1000)]
    assert picks.count("v2") == 50
    for start in range(0, 1000, 100):  # smooth round robin: no clumps
        assert picks[start : start + 100].count("v2") == 5


def test_names_that_are_not_routes_pass_through() -> None:
    table = _table(_route({"v1": 1}))
    assert table.pick("v1", ANONYMOUS, {}) is None
    assert table.names() == ["chat"] and table.targets("chat") == ["v1"]


def test_sticky_users_keep_their_target_and_the_split_follows_the_weights() -> None:
    table = _table(_route({"v1": 90, "v2": 10}, sticky="user"))
    users = [User(f"u{i}", None) for i in range(200)]
    rng = random.Random(3)
    assigned: dict[str, str] = {}
    counts = {"v1": 0, "v2": 0}
    for _ in range(5000):
        user = rng.choice(users)
        target = table.pick("chat", user, {})
        assert target is not None
        assert assigned.setdefault(user.name, target) == target, "a sticky user moved without a weight change"
        counts[target] += 1
    assert abs(counts["v2"] / 5000 - 0.10) < 0.015


def test_a_weight_change_moves_only_clients_of_the_shrinking_target() -> None:
    table = _table(_route({"v1": 90, "v2": 10}, sticky="user"))
    users = [User(f"u{i}", None) for i in range(200)]
    before = {u.name: table.pick("chat", u, {}) for u in users}
    table.replace([_route({"v1": 50, "v2": 50}, sticky="user")])
    after = {u.name: table.pick("chat", u, {}) for u in users}
    moved = [u for u in before if before[u] != after[u]]
    assert all(before[u] == "v1" and after[u] == "v2" for u in moved)
    assert abs(list(after.values()).count("v2") - 100) <= 2
    # and then they stay put again
    assert {u.name: table.pick("chat", u, {}) for u in users} == after


def test_sessions_stick_and_clients_without_an_identity_are_split_per_request() -> None:
    table = _table(_route({"v1": 1, "v2": 1}, sticky="session"))
    first = table.pick("chat", ANONYMOUS, {"x-session-id": "s1"})
    assert all(table.pick("chat", ANONYMOUS, {"x-session-id": "s1"}) == first for _ in range(10))
    no_session = [table.pick("chat", ANONYMOUS, {}) for _ in range(10)]
    assert no_session.count("v1") == no_session.count("v2") == 5
    users = _table(_route({"v1": 1, "v2": 1}, sticky="user"))
    anonymous = [users.pick("chat", ANONYMOUS, {}) for _ in range(10)]
    assert anonymous.count("v1") == 5  # anonymous traffic has no identity to stick to


def test_replacing_with_unchanged_weights_keeps_the_state() -> None:
    table = _table(_route({"v1": 2, "v2": 1}))
    picks = [table.pick("chat", ANONYMOUS, {}) for _ in range(2)]
    table.replace([_route({"v1": 2, "v2": 1})])
    picks.append(table.pick("chat", ANONYMOUS, {}))
    assert sorted(picks) == ["v1", "v1", "v2"]  # one cycle, not restarted mid-way


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes:\n- name: chat\n  targets: [{model: v3, weight: 1}]\n", 'unknown target model "v3"'),
        ("routes:\n- name: v1\n  targets: [{model: v2, weight: 1}]\n", 'would hide model "v1"'),
        ("routes:\n- name: chat\n  targets: [{model: v1, weight: -1}]\n", "routes[0].targets[0].weight"),
        ("routes:\n- name: chat\n  targets: [{model: v1, weight: 1}]\n- name: chat\n  targets: [{model: v1, weight: 1}]\n",
         "used twice"),
    ],
)
def test_a_bad_routes_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    with pytest.raises(RoutesFileError) as info:
        load_routes(str(path), {"v1", "v2"})
    assert message in str(info.value) and str(path) in str(info.value)


def test_a_weight_change_does_not_roll_the_gateway_pods() -> None:
    """The routes ConfigMap is hot-reloaded: the pods' config checksum ignores it."""
    source = (REPO / "examples" / "stacks" / "canary.yaml").read_text()
    changed = source.replace("weight: 95", "weight: 50").replace("weight: 5}", "weight: 50}")
    assert changed != source

    before, after = compile_stack(source, source_name="canary.yaml"), compile_stack(changed, source_name="canary.yaml")
    assert before.keys() == after.keys()
    differs = sorted(path for path in before if before[path] != after[path])
    assert differs == ["gateway/configmap-aibrix-gateway-routes.yaml"]
