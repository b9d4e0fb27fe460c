"""A real local vLLM runs the compiled engine command with only CPU-incompatible parts rewritten."""

from __future__ import annotations

from pathlib import Path

from local_stack.real_engine import vllm_argv, vllm_env

COMPILED = ("--model", "meta-llama/Meta-Llama-3-8B-Instruct", "--served-model-name", "llama-3-8b", "--host", "0.0.0.0",
            "--port", "8000", "--tensor-parallel-size", "1", "--pipeline-parallel-size", "1",
            "--gpu-memory-utilization", "0.9", "--dtype", "auto", "--max-model-len", "8192", "--enable-prefix-caching",
            "--enable-lora", "--max-loras", "1", "--kv-transfer-config", '{"kv_connector":"AIBrixKVConnector"}')


def test_the_compiled_command_keeps_its_serving_flags_and_loses_gpu_and_cluster_ones() -> None:
    assert vllm_argv("py", COMPILED, model_dir="/m", port=9000) == [
        "py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m", "--host", "127.0.0.1", "--port", "9000",
        "--served-model-name", "llama-3-8b", "--dtype", "auto", "--max-model-len", "8192", "--enable-prefix-caching",
        "--enable-lora", "--max-loras", "1"]


def test_flags_written_with_equals_are_dropped_alone() -> None:
    argv = vllm_argv("py", ("--tensor-parallel-size=2", "--served-model-name", "x"), model_dir="/m", port=1)
    assert argv[-2:] == ["--served-model-name", "x"] and "--tensor-parallel-size=2" not in argv


def test_the_environment_is_offline_with_caches_in_the_run_folder(tmp_path: Path) -> None:
    env = vllm_env(tmp_path, {"HF_HOME": "/var/cache/huggingface", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
                              "PYTHONPATH": "/opt/aibrix"})
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HOME"].startswith(str(tmp_path)) and "PYTHONPATH" not in env and "TMPDIR" not in env
