"""The compiler never imports a runtime component's heavy dependencies.

A subprocess installs a meta-path finder that raises on vllm, ray, torch, grpc, pulp,
pynvml, kubernetes, aiohttp and runtime_components, then imports the compiler and runs
every CLI command that does not validate output.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .helpers import EXAMPLES, REPO

BLOCKED = ("vllm", "ray", "torch", "grpc", "pulp", "pynvml", "kubernetes", "kubernetes_validate", "aiohttp", "runtime_components")

SCRIPT = textwrap.dedent(
    """
    import sys
    BLOCKED = {blocked!r}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked import of {{name}}")
            return None

    sys.meta_path.insert(0, Block())
    import compiler, compiler.cli
    for argv in ({stack!r}], ["explain", {stack!r}], ["schema"], ["validate", "--spec-only", {stack!r}]):
        code = compiler.cli.main(argv)
        assert code == 0, (argv, code)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("isolated")
    """
)


def test_compiler_runs_with_heavy_dependencies_blocked() -> None:
    stack = str(EXAMPLES / "quickstart.yaml")
    script = SCRIPT.format(blocked=BLOCKED, stack=stack).replace(f"({stack!r}]", f"([{stack!r}]")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("isolated")


def test_only_the_html_report_loads_jinja2() -> None:
    """Compiling and the text table never load Jinja2; the html report does, heavy deps still blocked."""
    stack = str(EXAMPLES / "production.yaml")
    script = textwrap.dedent(
        f"""
        import io, sys
        BLOCKED = {BLOCKED!r}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked import of {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import compiler.cli
        out, sys.stdout = sys.stdout, io.StringIO()
        for argv in ([{stack!r}], ["explain", {stack!r}]):
            assert compiler.cli.main(argv) == 0, argv
        assert "jinja2" not in sys.modules
        assert compiler.cli.main(["explain", "--format", "html", {stack!r}]) == 0
        page, sys.stdout = sys.stdout.getvalue(), out
        assert "jinja2" in sys.modules and "</html>" in page
        print("isolated")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("isolated")
