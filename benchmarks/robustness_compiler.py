"""Robustness of aibrix-compile on hostile input: the compiler half of issue 22's benchmark.

    python -m benchmarks.robustness_compiler --quick

Every example under ``examples/stacks`` is mutated into hostile cases, deterministically
(seeded): wrong types, deletions, unknown keys, huge and non-finite numbers, deep nesting,
long lines and keys, aliases (bombs, recursion, dangling), YAML tags, YAML 1.1-ambiguous
scalars, encodings (UTF-16, Latin-1, invalid and overlong UTF-8, NUL, BOM, CRLF), files
over the size limit, thousands of duplicate or unknown entries, and injection strings in
names. Each case is compiled by a real ``aibrix-compile`` process (``python -m
compiler.cli``, forked from a small launcher that sets a 1 GiB address-space cap with
``RLIMIT_AS`` and reads the child's own rusage with ``wait4``), and fails when:

- stderr holds a Python traceback, or "internal error";
- the exit code is neither 0 (compiled) nor 1 (refused), e.g. a crash or a usage error;
- a refusal has no ``file:line:column`` position;
- the process used more than 1 s of CPU (user + system: wall time on a shared machine
  measures the neighbours) or more than 200 MB of resident memory (``wait4`` rusage).

``run(quick)`` returns ``{"compiler_cases", "compiler_failures", "rows", ...}``; the
``benchmarks.robustness`` driver merges it with the runtime parts. Cases run two at a time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples" / "stacks").glob("*.yaml"))
MEMORY_CAP_BYTES = 1 << 30
MAX_CPU_S = 1.0
MAX_RSS_MB = 200.0
KILL_AFTER_S = 20.0

Path_ = tuple[Any, ...]


@dataclass(frozen=True)
class Case:
    example: str
    kind: str
    name: str
    make: Callable[[], bytes]  #: built when the case runs, so the driver stays small


# --- mutations -------------------------------------------------------------------------


def _walk(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, path + (i,))


def _set(data: Any, path: Path_, value: Any) -> Any:
    out = copy.deepcopy(data)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _delete(data: Any, path: Path_) -> Any:
    out = copy.deepcopy(data)
    node = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


def _dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, width=10**9).encode()


def _nested(depth: int, leaf: Any, *, lists: bool = False) -> Any:
    for _ in range(depth):
        leaf = [leaf] if lists else {"a": leaf}
    return leaf


def _structural(data: Any, rng: random.Random, scale: int) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    nodes = [(p, v) for p, v in _walk(data) if p]
    scalars = [(p, v) for p, v in nodes if not isinstance(v, (dict, list))]
    numbers = [(p, v) for p, v in scalars if isinstance(v, (int, float)) and not isinstance(v, bool)]
    strings = [(p, v) for p, v in scalars if isinstance(v, str)]
    mappings = [(p, v) for p, v in _walk(data) if isinstance(v, dict)]
    keyed = [(p, v) for p, v in nodes if isinstance(p[-1], str)]
    wrong = [[], {}, "text", 7, True, None, 3.5, [1, {"a": []}], -1, ""]
    for path, _value in rng.sample(nodes, min(len(nodes), 6 * scale)):
        choice = rng.choice(wrong)
        yield "types", f"{_show(path)} = {choice!r}", lambda path=path, choice=choice, data=data: _dump(_set(data, path, choice))
    for path, _value in rng.sample(keyed, min(len(keyed), 5 * scale)):
        yield "deletions", f"del {_show(path)}", lambda path=path, data=data: _dump(_delete(data, path))
    for path, mapping in rng.sample(mappings, min(len(mappings), 4 * scale)):
        near = rng.choice(list(mapping) or ["x"]) + rng.choice(["s", "_", "X", ""]) + "z"
        yield (
            "unknown keys",
            f"{_show(path)}.{near}",
            lambda path=path, mapping=mapping, near=near, data=data: _dump(
                _set(data, path, {**mapping, near: 1}) if path else {**data, near: 1}
            ),
        )
    huge = [10**40, -(10**40), 2**63, 2**64 + 1, 1e308, -1, 0]
    for path, _value in rng.sample(numbers, min(len(numbers), 3 * scale)):
        choice = rng.choice(huge)
        yield (
            "huge numbers",
            f"{_show(path)} = {choice!r}",
            lambda path=path, choice=choice, data=data: _dump(_set(data, path, choice)),
        )
    for path, _value in rng.sample(strings, min(len(strings), 2 * scale)):
        yield "long lines", f"{_show(path)} = 'x' * 200000", lambda path=path, data=data: _dump(_set(data, path, "x" * 200_000))
    if mappings:
        path, mapping = rng.choice(mappings)
        yield (
            "long lines",
            f"{_show(path)} key of 50000 chars",
            lambda path=path, mapping=mapping, data=data: _dump(
                _set(data, path, {**mapping, "k" * 50_000: 1}) if path else {**data, "k" * 50_000: 1}
            ),
        )
    for path, _value in rng.sample(nodes, min(len(nodes), scale)):
        yield (
            "deep nesting",
            f"{_show(path)} = 40-deep mapping",
            lambda path=path, data=data: _dump(_set(data, path, _nested(40, 1))),
        )
        yield (
            "deep nesting",
            f"{_show(path)} = 300-deep list",
            lambda path=path, data=data: _dump(_set(data, path, _nested(300, 1, lists=True))),
        )


_NUMBER_LINE = re.compile(rb"^(\s*[A-Za-z]+: )(\d+(\.\d+)?)\s*$", re.M)
_BOOL_LINE = re.compile(rb"^(\s*[A-Za-z]+: )(true|false)\s*$", re.M)
_VALUE_LINE = re.compile(rb"^(\s*[A-Za-z]+: )([A-Za-z0-9][^\n]*)$", re.M)


def _sub_nth(
    pattern: re.Pattern[bytes], text: bytes, rng: random.Random, make: Callable[[re.Match[bytes]], bytes]
) -> bytes | None:
    found = list(pattern.finditer(text))
    if not found:
        return None
    m = rng.choice(found)
    return text[: m.start()] + make(m) + text[m.end() :]


def _alias_bomb(levels: int, reuse: int) -> bytes:
    lines = ['x0: &x0 "lol"'] + [f"x{k}: &x{k} [" + ", ".join([f"*x{k - 1}"] * reuse) + "]" for k in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


def _textual(text: bytes, data: Any, rng: random.Random) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    for token in (b".inf", b"-.inf", b".nan", b".NaN", b"1e999", b'"inf"'):
        out = _sub_nth(_NUMBER_LINE, text, rng, lambda m, t=token: m.group(1) + t)
        if out is not None:
            yield "non-finite numbers", token.decode(), lambda out=out: out
    for token in (b"on", b"off", b"yes", b"no", b"010", b"1:08:16", b"0o17", b"2024-01-01", b"1_000"):
        pattern = _BOOL_LINE if token in (b"on", b"off", b"yes", b"no") else _NUMBER_LINE
        out = _sub_nth(pattern, text, rng, lambda m, t=token: m.group(1) + t)
        if out is not None:
            yield "YAML 1.1 scalars", token.decode(), lambda out=out: out
    for tag in (
        b"!!python/object/apply:os.system ['id']",
        b"!custom ",
        b"!!binary ",
        b"!!set ",
        b"!!timestamp ",
        b"!<tag:x,2000:y> ",
    ):
        out = _sub_nth(_VALUE_LINE, text, rng, lambda m, t=tag: m.group(1) + t + m.group(2))
        if out is not None:
            yield "tags", tag.decode().strip(), lambda out=out: out
    yield "aliases", "bomb 10 levels x 9", lambda text=text: text + _alias_bomb(10, 9)
    yield "aliases", "bomb 30 levels x 2", lambda text=text: text + _alias_bomb(30, 2)
    yield "aliases", "bomb only", lambda: b"apiVersion: aibrix.ai/v1alpha1\n" + _alias_bomb(12, 10)
    yield "aliases", "recursive", lambda text=text: text + b"loop: &loop [*loop]\n"
    yield "aliases", "undefined", lambda text=text: text + b"dangling: *nowhere\n"
    yield "aliases", "merge key", lambda text=text: text + b"base: &b {a: 1}\nderived:\n  <<: *b\n"
    yield "encodings", "utf-16 with BOM", lambda text=text: text.decode().encode("utf-16")
    yield "encodings", "utf-16-le without BOM", lambda text=text: text.decode().encode("utf-16-le")
    yield "encodings", "latin-1 byte", lambda text=text: text.replace(b"name: ", b"name: caf\xe9", 1)
    yield "encodings", "invalid byte 0xff", lambda text=text: text[: len(text) // 2] + b"\xff" + text[len(text) // 2 :]
    yield "encodings", "overlong utf-8", lambda text=text: text.replace(b"name: ", b"name: \xc0\xaf", 1)
    yield "encodings", "NUL byte", lambda text=text: text.replace(b"name: ", b"name: a\x00b", 1)
    yield "encodings", "utf-8 BOM", lambda text=text: b"\xef\xbb\xbf" + text
    yield "encodings", "CRLF", lambda text=text: text.replace(b"\n", b"\r\n")
    yield "encodings", "tab indentation", lambda text=text: text.replace(b"\n  ", b"\n\t", 1)
    yield "encodings", "truncated", lambda text=text: text[: len(text) * 2 // 3]
    yield "encodings", "control character", lambda text=text: text.replace(b"name: ", b"name: a\x1bb", 1)
    yield "deep nesting", "100000-deep flow", lambda text=text: text + b"deep: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    yield "deep nesting", "unclosed 50000 braces", lambda text=text: text + b"deep: " + b"{a: " * 50_000 + b"\n"
    yield (
        "deep nesting",
        "600-deep block",
        lambda text=text: text + b"deep:\n" + b"".join(b" " * i + b"k:\n" for i in range(1, 600)),
    )
    yield "long lines", "1 MB comment line", lambda text=text: text + b"# " + b"x" * (1 << 20) + b"\n"
    yield "size", "10 MB", lambda text=text: text + (b"# " + b"x" * 97 + b"\n") * 104_858
    yield "size", "many documents", lambda text=text: (text + b"---\n") * 50
    pools = ", ".join(["l20"] * 8000).encode()
    yield (
        "duplicates",
        "8000 duplicate pools",
        lambda pools=pools, text=text: re.sub(rb"pools: \[[^\]]*\]", b"pools: [" + pools + b"]", text, count=1),
    )
    yield "unknown keys", "20000 unknown keys", lambda text=text: text + b"".join(b"  k%d: 1\n" % i for i in range(20_000))
    yield "duplicates", "duplicate keys x2000", lambda text=text: text + b"".join(b"dup: %d\n" % i for i in range(2000))
    for value in ('a"}) or vector(1e9) #', "$(reboot)", "x\ny: z", "a'b", "é" * 70):
        models = data.get("spec", {}).get("models") if isinstance(data, dict) else None
        if models:
            path: Path_ = ("spec", "models", 0, "servedModelName")
            yield (
                "injection",
                f"servedModelName {value[:20]!r}",
                lambda path=path, value=value, data=data: _dump(_set(data, path, value)),
            )
    yield "injection", "label value with quote", lambda data=data: _dump(_set(data, ("metadata", "labels"), {"team": 'a"b'}))


def _show(path: Path_) -> str:
    return ".".join(str(p) for p in path)[:60]


def cases(quick: bool, seed: int = 22) -> list[Case]:
    """Every hostile case, deterministic for a seed."""
    rng = random.Random(seed)
    scale = 1 if quick else 3
    out = []
    for example in EXAMPLES:
        text = example.read_bytes()
        data = yaml.safe_load(text)
        textual = list(_textual(text, data, rng))
        if quick:  # every kind of textual mutation still occurs across the examples
            textual = rng.sample(textual, min(len(textual), 20))
        for kind, name, make in [*_structural(data, rng, scale), *textual]:
            out.append(Case(example.stem, kind, name, make))
    return out


# --- running ---------------------------------------------------------------------------


# A tiny launcher between this driver and each compile: the kernel counts a child's peak RSS
# from the process it was forked from, so the compiler is forked from this small process
# (python -S), which caps its address space, waits for it with wait4 and prints its rusage.
_LAUNCHER = """
import json, os, resource, sys
cap, out, err, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    os.execv(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime, "rss_kb": usage.ru_maxrss}))
"""


def run_case(case: Case, folder: Path, index: int) -> dict[str, Any]:
    """Compile one case in a fresh, memory-capped process and classify the result."""
    path = folder / f"case-{index:04d}.yaml"
    content = case.make()
    path.write_bytes(content)
    out_path, err_path = folder / f"case-{index:04d}.out", folder / f"case-{index:04d}.err"
    argv = [sys.executable, "-S", "-c", _LAUNCHER, str(MEMORY_CAP_BYTES), str(out_path), str(err_path)]
    argv += [sys.executable, "-m", "compiler.cli", str(path)]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=REPO, start_new_session=True)
    try:
        report, _ = proc.communicate(timeout=KILL_AFTER_S)
        measured = json.loads(report)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        measured = {"rc": -9, "cpu": KILL_AFTER_S, "rss_kb": 0}
    wall = time.perf_counter() - start
    stderr = err_path.read_text(encoding="utf-8", errors="replace") if err_path.exists() else ""
    rc, cpu, rss_mb = measured["rc"], measured["cpu"], measured["rss_kb"] / 1024
    failure = ""
    if "Traceback (most recent call last)" in stderr:
        failure = "traceback"
    elif "internal error" in stderr:
        failure = "internal error"
    elif rc not in (0, 1):
        failure = f"exit {rc}"
    elif rc == 1 and not re.search(rf"^error: {re.escape(str(path))}:\d+:\d+: ", stderr, re.M):
        failure = "no position"
    elif rc == 0 and out_path.stat().st_size == 0:
        failure = "empty output"
    elif cpu > MAX_CPU_S:
        failure = f"over {MAX_CPU_S:g} s CPU"
    elif rss_mb > MAX_RSS_MB:
        failure = f"over {MAX_RSS_MB:g} MB"
    first_error = next((line for line in stderr.splitlines()[1:2]), "").strip()
    for p in (path, out_path, err_path):
        p.unlink(missing_ok=True)
    return {
        "example": case.example,
        "kind": case.kind,
        "case": case.name,
        "bytes": len(content),
        "rc": rc,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "rss_mb": round(rss_mb, 1),
        "failure": failure,
        "message": first_error[:120],
    }


def run(quick: bool) -> dict[str, Any]:
    """Run every case; the RESULT keys of the robustness benchmark's compiler half."""
    all_cases = cases(quick)
    with tempfile.TemporaryDirectory(prefix="aibrix-robustness-") as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(lambda pair: run_case(pair[1], Path(tmp), pair[0]), enumerate(all_cases)))
    failures = [r for r in rows if r["failure"]]
    return {
        "compiler_cases": len(rows),
        "compiler_failures": len(failures),
        "compiler_refused": sum(r["rc"] == 1 for r in rows),
        "compiler_max_cpu_s": max(r["cpu_s"] for r in rows),
        "compiler_max_rss_mb": max(r["rss_mb"] for r in rows),
        "rows": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    rows = result["rows"]
    kinds = sorted({r["kind"] for r in rows})
    print(
        f"{'mutation':<20} {'cases':>6} {'refused':>8} {'compiled':>9} {'failures':>9} "
        f"{'max cpu s':>10} {'max wall s':>11} {'max rss MB':>11}"
    )
    for kind in kinds:
        group = [r for r in rows if r["kind"] == kind]
        print(
            f"{kind:<20} {len(group):>6} {sum(r['rc'] == 1 for r in group):>8} {sum(r['rc'] == 0 for r in group):>9} "
            f"{sum(bool(r['failure']) for r in group):>9} {max(r['cpu_s'] for r in group):>10.3f} "
            f"{max(r['wall_s'] for r in group):>11.3f} {max(r['rss_mb'] for r in group):>11.1f}"
        )
    failed = [r for r in rows if r["failure"]]
    for r in failed[:20]:
        print(
            f"FAILED {r['example']} / {r['kind']} / {r['case']}: {r['failure']} "
            f"(rc {r['rc']}, {r['cpu_s']} s, {r['rss_mb']} MB) {r['message']}"
        )
    if len(failed) > 20:
        print(f"... and {len(failed) - 20} more failures")
    print(f"limits per case: {MAX_CPU_S:g} s CPU, {MAX_RSS_MB:g} MB RSS, address space capped at {MEMORY_CAP_BYTES >> 20} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 330 cases (the full run has about 900)")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print_table(result)
    summary = {k: v for k, v in result.items() if k != "rows"}
    print("RESULT " + json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
