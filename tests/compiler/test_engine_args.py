"""Engine command lines: derived flags, extra args, weights location."""

from __future__ import annotations

import pytest

from compiler.engine_args import DERIVED_ARGS, KV_POOL_DERIVED_ARGS, arg_flag, derived_args, engine_command, weights_location

BASE = dict(
    uri="hf://org/model",
    served_name="m",
    port=8000,
    tensor=2,
    pipeline=1,
    max_model_len=None,
    prefix_caching=True,
    gpu_memory_utilization=0.9,
    dtype="auto",
    lora=None,
    extra={},
)


@pytest.mark.parametrize(
    "key, flag",
    [("maxNumSeqs", "--max-num-seqs"), ("enforceEager", "--enforce-eager"), ("kvCacheDtype", "--kv-cache-dtype"), ("seed", "--seed")],
)
def test_arg_flag(key: str, flag: str) -> None:
    assert arg_flag(key) == flag


@pytest.mark.parametrize(
    "uri, location",
    [
        ("hf://Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B"),
        ("pvc://store/llama/8b", "/models/llama/8b"),
        ("pvc://store", "/models"),
    ],
)
def test_weights_location(uri: str, location: str) -> None:
    assert weights_location(uri) == location


@pytest.mark.parametrize(
    "engine, changes, present, absent",
    [
        ("vllm", {}, ["--tensor-parallel-size 2", "--enable-prefix-caching"], ["--max-model-len", "--enable-lora"]),
        ("vllm", {"max_model_len": 4096}, ["--max-model-len 4096"], []),
        ("vllm", {"prefix_caching": False}, ["--no-enable-prefix-caching"], ["--enable-prefix-caching"]),
        ("vllm", {"lora": (4, 32)}, ["--enable-lora --max-loras 4 --max-lora-rank 32"], []),
        ("vllm", {"extra": {"maxNumSeqs": 64, "enforceEager": True, "logStats": False}}, ["--max-num-seqs 64 --enforce-eager --no-log-stats"], []),
        ("sglang", {}, ["--model-path org/model", "--tp-size 2", "--mem-fraction-static 0.9"], ["--disable-radix-cache"]),
        ("sglang", {"prefix_caching": False, "max_model_len": 8192}, ["--disable-radix-cache", "--context-length 8192"], []),
        ("sglang", {"lora": (2, 16)}, ["--enable-lora --max-loras-per-batch 2 --max-lora-rank 16"], []),
    ],
)
def test_engine_command(engine: str, changes: dict, present: list[str], absent: list[str]) -> None:
    command = engine_command(engine=engine, **{**BASE, **changes})
    line = " ".join(command.args)
    for fragment in present:
        assert fragment in line
    for fragment in absent:
        assert fragment not in line


def test_every_derived_flag_is_really_emitted_by_the_compiler() -> None:
    # DERIVED_ARGS refuses these keys in engine.args; each must be a flag we do set.
    for engine, derived in DERIVED_ARGS.items():
        full = engine_command(engine=engine, **{**BASE, "max_model_len": 10, "prefix_caching": False, "lora": (1, 8)})
        line = " ".join(full.args)
        for key in derived:
            flag = arg_flag(key)
            assert flag in line or f"--no-{flag[2:]}" in line or (engine == "vllm" and key == "enablePrefixCaching"), (engine, key)


@pytest.mark.parametrize(
    "engine, uses_kv_pool, refused",
    [
        ("vllm", True, {"blockSize", "kvTransferConfig"}),
        ("vllm", False, set()),
        ("sglang", True, set()),  # the pool's connector is vLLM's; sglang models are refused elsewhere
    ],
)
def test_kv_pool_connector_args_are_derived_only_when_the_pool_is_used(engine: str, uses_kv_pool: bool, refused: set[str]) -> None:
    derived = derived_args(engine, uses_kv_pool=uses_kv_pool)
    assert set(derived) - set(DERIVED_ARGS[engine]) == refused
    assert derived["port"] == "set engine.port instead"


def test_kv_pool_flags_the_compiler_sets_are_the_refused_keys() -> None:
    from .component_stacks import FULL, engine_args, objects

    args = engine_args(objects(FULL), "llama-3-8b-l20")
    for key in KV_POOL_DERIVED_ARGS:
        assert args.count(arg_flag(key)) == 1, key


def test_without_the_pool_a_users_connector_args_pass_through_once() -> None:
    from .component_stacks import engine_args, objects
    from .helpers import with_model

    data = with_model(engine={"args": {"blockSize": 32, "kvTransferConfig": '{"kv_connector":"X"}'}})
    args = engine_args(objects(data), "small")
    assert (args.count("--block-size"), args.count("--kv-transfer-config")) == (1, 1)
    assert args[args.index("--block-size") + 1] == "32"
