"""Real vLLM (CPU build) for models given with ``--model-dir NAME=PATH``.

Where it sits: the runner starts these instead of simulated engines for the named models. The
engine command is the compiled one (``plan.models[].command``: served name, max model length,
prefix caching, LoRA flags) with only what cannot hold on a CPU laptop rewritten: the weights
come from PATH, the server listens on a free loopback port, GPU-only flags and the KV pool's
connector are dropped, and every cache vLLM, torch and Hugging Face write goes under the run's
folder with the hub offline.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["vllm_argv", "vllm_env"]

# Flags with a value that mean nothing (or something wrong) on one CPU: dropped with their value.
_DROP_WITH_VALUE = {"--tensor-parallel-size", "--pipeline-parallel-size", "--gpu-memory-utilization",
                    "--kv-transfer-config", "--load-format", "--distributed-executor-backend"}
_REPLACED = {"--model", "--host", "--port"}


def vllm_argv(python: str, compiled_args: tuple[str, ...], *, model_dir: str, port: int) -> list[str]:
    """The compiled vLLM arguments for a local CPU instance serving ``model_dir`` on ``port``."""
    args: list[str] = []
    skip = False
    for i, arg in enumerate(compiled_args):
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in _DROP_WITH_VALUE | _REPLACED:
            skip = "=" not in arg and i + 1 < len(compiled_args)
            continue
        args.append(arg)
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--host", "127.0.0.1",
            "--port", str(port), *args]


def vllm_env(work_dir: Path, compiled_env: dict[str, str]) -> dict[str, str]:
    """Offline, every cache inside ``work_dir``, a small CPU KV cache; the compiled env's
    engine switches (runtime LoRA updating) kept, its cluster paths not. TMPDIR stays the
    system's: vLLM binds ZeroMQ IPC sockets there, and a socket path over 107 bytes fails."""
    for sub in ("cache", "home"):
        (work_dir / sub).mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in compiled_env.items() if k.startswith("VLLM_") and not v.startswith("/")}
    return {
        **kept,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HOME": str(work_dir / "home"),
        "HF_HOME": str(work_dir / "cache" / "hf"),
        "VLLM_CACHE_ROOT": str(work_dir / "cache" / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(work_dir / "cache" / "inductor"),
        "TRITON_CACHE_DIR": str(work_dir / "cache" / "triton"),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        # the compiled --max-model-len is the production model's; a small local model may be shorter
        "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
