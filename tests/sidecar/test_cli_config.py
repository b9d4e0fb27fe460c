"""aibrix-sidecar's config file: each bad file is one clear, line-numbered message and exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime_components.sidecar.cli import main

CASES = [
    # (file text or None for an absent file, the start of stderr)
    (None, "error: {path}\n  cannot read the file: No such file or directory\n"
           "  hint: pass the mounted sidecar config, e.g. --config /etc/aibrix/sidecar.yaml\n"),
    ("podz: {}\n", "error: {path}:1:1: maxLoras\n  missing required field `maxLoras`\n"),
    ("model: m\nmaxLoras: 2\npods: {kind: statc}\n",
     "error: {path}:3:14: pods.kind\n  `statc` is not allowed here\n      3 | pods: {{kind: statc}}\n"
     "        |              ^\n  hint: expected one of: 'kubernetes' or 'static'\n"),
    ("model: m\nmaxLoras: 2\npods: {kind: static}\n", "error: pods.staticFile is required when pods.kind is static\n"),
    ("model: m\nmodel: n\n", "error: {path}:2:1: model\n  duplicate key `model`\n"),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=["absent", "typo", "bad-kind", "static-without-file", "duplicate"])
def test_bad_config_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None,
                                   expected: str) -> None:  # fmt: skip
    path = tmp_path / "sidecar.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    assert main(["--config", str(path), "--pod-name", "p", "--once"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(expected.format(path=path)) and "Traceback" not in err


def test_typo_gets_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text("model: m\nmaxLoras: 2\npodz: {}\n", encoding="utf-8")
    assert main(["--config", str(path), "--pod-name", "p"]) == 1
    assert capsys.readouterr().err == (
        f"error: {path}:3:1: podz\n  unknown field `podz`\n      3 | podz: {{}}\n        | ^\n  hint: did you mean `pods`?\n"
    )
