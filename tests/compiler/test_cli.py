"""The aibrix-compile command line: outputs, atomic -o, --check, exit codes, stderr only."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compiler import compile_stack
from compiler.cli import main
from compiler.serialize import to_stream

from .helpers import EXAMPLES, REPO, dump, with_model

QUICKSTART = EXAMPLES / "quickstart.yaml"
BAD = dump(with_model(replica={"min": 1}))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def expected_files() -> dict[str, str]:
    return compile_stack(QUICKSTART.read_text(encoding="utf-8"), source_name=str(QUICKSTART))


def test_stdout_is_the_stream_and_nothing_else(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(QUICKSTART))
    assert (code, err) == (0, "")
    assert out == to_stream(expected_files())
    assert all(doc["metadata"]["namespace"] == "llm" for doc in yaml.safe_load_all(out) if doc["kind"] != "Namespace")


def test_invalid_stack_prints_nothing_on_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = tmp_path / "bad.yaml"
    stack.write_text(BAD)
    code, out, err = run(capsys, str(stack))
    assert (code, out) == (1, "")
    assert f"error: {stack}:18:5: spec.models[0].replica\n  unknown field \"replica\"" in err
    assert err.endswith(f"1 error in {stack}\n")


def test_output_dir_holds_one_file_per_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, str(QUICKSTART), "-o", str(out_dir))
    assert (code, out) == (0, "")
    written = {p.relative_to(out_dir).as_posix(): p.read_text() for p in out_dir.rglob("*.yaml")}
    assert written == expected_files()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging leftovers


def test_failed_compile_leaves_output_dir_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    run(capsys, str(QUICKSTART), "-o", str(out_dir))
    before = {p: p.read_bytes() for p in out_dir.rglob("*")if p.is_file()}
    stack = tmp_path / "bad.yaml"
    stack.write_text(BAD)
    code, _out, _err = run(capsys, str(stack), "-o", str(out_dir))
    assert code == 1
    assert {p: p.read_bytes() for p in out_dir.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "out"]


def test_rewriting_removes_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    run(capsys, str(QUICKSTART), "-o", str(out_dir))
    (out_dir / "engine" / "deployment-old.yaml").write_text("stale: true\n")
    assert run(capsys, str(QUICKSTART), "-o", str(out_dir))[0] == 0
    assert not (out_dir / "engine" / "deployment-old.yaml").exists()


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "src"
    foreign.mkdir()
    (foreign / "main.py").write_text("print()\n")
    code, out, err = run(capsys, str(QUICKSTART), "-o", str(foreign))
    assert (code, out) == (2, "")
    assert "holds no kustomization.yaml" in err and (foreign / "main.py").exists()


def test_check_passes_when_current_and_fails_with_a_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    run(capsys, str(QUICKSTART), "-o", str(out_dir))
    assert run(capsys, str(QUICKSTART), "--check", str(out_dir)) == (0, "", "")
    target = out_dir / "engine" / "deployment-qwen2-5-0-5b.yaml"
    target.write_text(target.read_text().replace("replicas: 1", "replicas: 5"))
    (out_dir / "engine" / "extra.yaml").write_text("x: 1\n")
    code, out, err = run(capsys, str(QUICKSTART), "--check", str(out_dir))
    assert code == 1
    assert "--- a/engine/deployment-qwen2-5-0-5b.yaml\n+++ b/engine/deployment-qwen2-5-0-5b.yaml\n" in out
    assert "-  replicas: 5\n+  replicas: 1\n" in out
    assert "--- a/engine/extra.yaml\n+++ /dev/null\n" in out
    assert "is stale; regenerate it with" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--kube-version", "1.12", "STACK"], "--kube-version 1.12 is not supported; expected 1.25 or newer"),
        (["--kube-version", "latest", "STACK"], '--kube-version "latest" is not a Kubernetes version'),
        (["missing.yaml"], "cannot read missing.yaml: no such file"),
        (["--namespace", 'x"}', "NONS"], '--namespace "x\"}" is not a valid namespace; expected a DNS-1123 label'),
        (["STACK", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["STACK", "-o", "a", "--check", "b"], "argument --check: not allowed with argument -o/--output"),
        ([], "usage: aibrix-compile"),
        (["STACK", "--crd-dir", "no-such-dir"], "--crd-dir no-such-dir: not a directory"),
        (["validate", "STACK", "--crd-dir", "no-such-dir"], "--crd-dir no-such-dir: not a directory"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_namespace = tmp_path / "no-namespace.yaml"
    no_namespace.write_text(QUICKSTART.read_text().replace("  namespace: llm\n", ""))
    argv = [str(QUICKSTART) if a == "STACK" else str(no_namespace) if a == "NONS" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("version", ["1.25", "v1.30.4", "1.37.0+k3s1", "1.29.3-gke.100"])
def test_kube_versions_accepted(version: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, str(QUICKSTART), "--kube-version", version)[0] == 0


@pytest.mark.parametrize("version", ["1.38", "v1.40.1", "2.0"])
def test_newer_kube_versions_compile_with_the_newest_rules_and_a_warning(
    version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, str(QUICKSTART), "--kube-version", version)
    newest = run(capsys, str(QUICKSTART), "--kube-version", "1.37")[1]
    assert (code, out) == (0, newest)
    shown = version.removeprefix("v").rpartition(".")[0] if version.count(".") == 2 else version
    assert err == (
        f"warning: --kube-version {shown} is newer than the newest version this aibrix-compile knows (1.37); "
        "compiling with 1.37's rules. Upgrade aibrix-compile to use what is new.\n"
    )


def test_explain_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "explain", str(EXAMPLES / "heterogeneous.yaml"))
    assert code == 0
    assert out.splitlines() == [
        "MODEL        POOLS    GPUS/REPLICA  REPLICAS  $/H AT MIN  $/H AT MAX",
        "llama-3-8b   l20,a10  1             3-3             2.80        2.80",
        "llama-3-70b  h100     4             2-2            24.00       24.00",
        "TOTAL                                              26.80       26.80",
        "",
        "WEIGHTS",
        "llama-3-8b: from the hub: hf://meta-llama/Meta-Llama-3-8B-Instruct",
        "llama-3-70b: from the hub: hf://meta-llama/Meta-Llama-3-70B-Instruct",
    ]


def test_validate_and_schema(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("kubernetes_validate")
    code, out, err = run(capsys, "validate", str(QUICKSTART))
    assert (code, out) == (0, "") and "its 7 objects pass validation" in err
    code, out, _err = run(capsys, "schema")
    assert code == 0 and '"$id": "https://aibrix.ai/schemas/inferencestack.schema.json"' in out


def test_stdin_input(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(BAD))
    code, out, err = run(capsys, "-")
    assert (code, out) == (1, "")
    assert "error: <stdin>:18:5: spec.models[0].replica" in err and "    18 |     replica:" in err


def test_console_script_separates_streams(tmp_path: Path) -> None:
    script = shutil.which("aibrix-compile") or shutil.which("aibrix-compile", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "compiler.cli"]
    ok = subprocess.run([*command, str(QUICKSTART)], capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout == to_stream(expected_files())


# --- hostile input through the real command (issues 13 and 22): exit 1, a position, a clear message ---


def _alias_bomb() -> str:
    lines = ["apiVersion: aibrix.ai/v1alpha1", "kind: InferenceStack", 'l0: &l0 "lol"']
    lines += [f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]" for k in range(1, 10)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("alias-bomb", _alias_bomb().encode(), ":8:20: l5[2]\n  the document builds more than 30000 values\n"),
        (
            "ten-megabytes",
            QUICKSTART.read_bytes() + b"# padding padding padding padding padding padding padding\n" * 180_000,
            "  the file is larger than 1 MiB\n",
        ),
        ("deep-flow", b"spec: " + b"[" * 200_000 + b"]" * 200_000 + b"\n", ":1:38: spec[0][0][0]"),
        ("deep-block", b"spec:\n" + b"".join(b" " * i + b"k:\n" for i in range(1, 200)), "  the document nests deeper than 32 levels\n"),
        ("latin-1", QUICKSTART.read_bytes().replace(b"quickstart", b"caf\xe9"), "  the file is not UTF-8 text (byte 0xe9 at offset "),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "",
)
def test_hostile_input_exits_1_with_a_positioned_message(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    stack = tmp_path / f"{name}.yaml"
    stack.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "compiler.cli", str(stack)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"error: {stack}:"), result.stderr[:300]
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert len(result.stderr) < 2_000  # an excerpt of the line, not the line


def test_stdin_is_read_under_the_same_limits(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "compiler.cli", "-"], input=b"a: b\n\xff\n", capture_output=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 1
    assert result.stderr.decode().startswith("error: <stdin>:2:1: (document)\n  the file is not UTF-8 text")
