"""validate: which error class each layer raises, one diagnostic per problem, labels/env rules."""

from __future__ import annotations

from typing import Any

import pytest

from compiler import SpecError, SpecReferenceError, SpecSyntaxError, SpecValidationError, compile_stack
from compiler.errors import did_you_mean, format_path

from .helpers import dump, minimal, with_model


def errors_of(data: dict[str, Any] | str) -> SpecError:
    text = data if isinstance(data, str) else dump(data)
    with pytest.raises(SpecError) as info:
        compile_stack(text, source_name="t.yaml")
    return info.value


@pytest.mark.parametrize(
    "data, error_class, path, message",
    [
        ("a: [", SpecSyntaxError, (), "invalid YAML: did not find expected node content (while parsing a flow node)"),
        (with_model(name="UPPER"), SpecValidationError, ("spec", "models", 0, "name"), 'the text "UPPER" is not a valid DNS-1123 label'),
        (with_model(placement={"pools": ["nope"]}), SpecReferenceError, ("spec", "models", 0, "placement", "pools", 0), 'unknown pool "nope"'),
        (
            with_model(source={"uri": "hf://o/m?token=abc"}),
            SpecValidationError,
            ("spec", "models", 0, "source", "uri"),
            "this value contains a credential in a URL query",
        ),
        (
            with_model(engine={"env": {"1BAD": "x"}}),
            SpecReferenceError,
            ("spec", "models", 0, "engine", "env", "1BAD"),
            '"1BAD" is not a valid environment variable name',
        ),
        (
            with_model(engine={"args": {"max-num-seqs": 3}}),
            SpecReferenceError,
            ("spec", "models", 0, "engine", "args", "max-num-seqs"),
            'engine argument "max-num-seqs" is not camelCase',
        ),
        (
            {**minimal(), "metadata": {"name": "demo", "labels": {"team": "a b"}}},
            SpecReferenceError,
            ("metadata", "labels", "team"),
            '"a b" is not a valid label value',
        ),
        (
            with_model(source={"uri": "pvc://Model_Store/llama"}),
            SpecReferenceError,
            ("spec", "models", 0, "source", "uri"),
            '"Model_Store" is not a valid PersistentVolumeClaim name',
        ),
        (
            minimal(diagnostics={"pools": ["l4", "l40"]}),
            SpecReferenceError,
            ("spec", "diagnostics", "pools", 1),
            'unknown pool "l40"',
        ),
        (
            with_model(autoscaling={"policy": "none", "useKeda": True}),
            SpecReferenceError,
            ("spec", "models", 0, "autoscaling", "useKeda"),
            "useKeda applies to policy hpa, not none",
        ),
        (
            with_model(replicas={"min": 0, "max": 0}, autoscaling={"policy": "kpa"}),
            SpecReferenceError,
            ("spec", "models", 0, "replicas", "max"),
            "an autoscaled model needs room to scale, but replicas.max is 0",
        ),
        (
            minimal(gateway={"enabled": True, "flowControl": {
                "enabled": True, "saturation": {"maxWaitingPerEngine": 4, "underShareReserve": 4}}}),
            SpecValidationError,
            ("spec", "gateway", "flowControl", "saturation"),
            "underShareReserve (4) must be below maxWaitingPerEngine (4): users over their fair share would get no "
            "waiting place at all",
        ),
        (
            {**with_model(engine={"args": {"schedulingPolicy": "fcfs"}}),
             "spec": {**with_model(engine={"args": {"schedulingPolicy": "fcfs"}})["spec"],
                      "gateway": {"enabled": True, "flowControl": {"enabled": True}}}},
            SpecReferenceError,
            ("spec", "models", 0, "engine", "args", "schedulingPolicy"),
            'engine argument "schedulingPolicy" is derived by the compiler',
        ),
        (
            with_model(source={"uri": "hf://meta-llama/Meta-Llama-3-70B-Instruct"}),
            SpecValidationError,
            ("spec", "models", 0, "parallelism", "tensor"),
            'llama-3-70b (141 GB of weights) does not fit on a replica of 1 x nvidia-l4 (24 GiB each at '
            'gpuMemoryUtilization 0.9) in pool "l4"',
        ),
        (
            {**minimal(), "spec": {**minimal()["spec"], "gpu_pools": minimal()["spec"]["gpuPools"]}},
            SpecValidationError,
            ("spec", "gpu_pools"),
            'unknown field "gpu_pools"',  # snake_case names are not accepted, only the YAML spelling
        ),
    ],
)
def test_error_class_path_and_message(data: Any, error_class: type, path: tuple[Any, ...], message: str) -> None:
    error = errors_of(data)
    assert type(error) is error_class
    assert [(d.path, d.message) for d in error.diagnostics][:1] == [(path, message)]


def test_secret_in_a_typed_field_is_reported_once() -> None:
    error = errors_of(with_model(source={"uri": "hf://o/m?token=abc"}))
    assert len(error.diagnostics) == 1


def test_validation_errors_are_all_reported_at_once() -> None:
    data = with_model(name="Bad", replica=1, engine={"dtype": "fp8"})
    messages = sorted(d.message for d in errors_of(data).diagnostics)
    assert messages == ['the text "Bad" is not a valid DNS-1123 label', 'the text "fp8" is not allowed here', 'unknown field "replica"']


@pytest.mark.parametrize(
    "path, text",
    [((), "(document)"), (("spec", "models", 0, "name"), "spec.models[0].name"), (("a", 1, 2, "b"), "a[1][2].b")],
)
def test_format_path(path: tuple[Any, ...], text: str) -> None:
    assert format_path(path) == text


@pytest.mark.parametrize(
    "got, choices, hint",
    [("replica", ["replicas", "routing"], 'did you mean "replicas"?'), ("zzz", ["replicas"], "")],
)
def test_did_you_mean(got: str, choices: list[str], hint: str) -> None:
    assert did_you_mean(got, choices) == hint


# --- no secrets, strict values (issue 22): refused at the spec, with a position ---


@pytest.mark.parametrize(
    "value, what",
    [
        ("redis://:hunter2@redis:6379/0", "a password inside a URL"),
        ("rediss://default:pw@redis:6380", "a password inside a URL"),
        ("s3://bucket/m?X-Amz-Signature=abc123", "a credential in a URL query"),
        ("https://host/m?x-amz-security-token=abc", "a credential in a URL query"),
        ("gs://bucket/m?X-Goog-Credential=abc", "a credential in a URL query"),
        ("https://acct.blob.core.windows.net/c/m?sv=2024&sig=abc", "a credential in a URL query"),
        ("https://host/m?key=AIzaSyExample", "a credential in a URL query"),
        ("text with ftp://user:pw@host inside", "a password inside a URL"),
        ("redis://redis:6379/0", None),
        ("redis://user@redis:6379/0", None),
        ("hf://org/model?revision=main", None),
        ("x" * 100_000, None),  # and linear: a long value is scanned in milliseconds
    ],
)
def test_credentials_in_every_url_form_are_found(value: str, what: str | None) -> None:
    from aibrix_spec import find_literal_secret

    assert find_literal_secret(value) == what


@pytest.mark.parametrize(
    "name, credential",
    [
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("HF_TOKEN", True),
        ("HUGGING_FACE_HUB_TOKEN", True),
        ("OPENAI_API_KEY", True),
        ("REDIS_PASSWORD", True),
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("my_secret", True),
        ("TOKENIZERS_PARALLELISM", False),
        ("VLLM_MAX_TOKENS", False),
        ("VLLM_LOGGING_LEVEL", False),
        ("NCCL_DEBUG", False),
    ],
)
def test_credential_like_env_names(name: str, credential: bool) -> None:
    from aibrix_spec import credential_like_name

    assert credential_like_name(name) is credential
    error = errors_of(with_model(engine={"env": {name: "value"}})) if credential else None
    if credential:
        assert error is not None and "looks like a credential" in error.diagnostics[0].message


@pytest.mark.parametrize(
    "uri, message",
    [
        ("pvc://model-store/../../etc", "the URI's path holds a . or .. segment"),
        ("hf://org/../other", "the URI's path holds a . or .. segment"),
        ("s3://bucket/./m", "the URI's path holds a . or .. segment"),
        ("hf://org/model name", "the URI holds a space, quote, backslash or control character"),
        ('hf://org/mo"del', "the URI holds a space, quote, backslash or control character"),
    ],
)
def test_source_uris_stay_inside_their_source(uri: str, message: str) -> None:
    error = errors_of(with_model(source={"uri": uri}))
    assert error is not None
    assert [d.message for d in error.diagnostics] == [message]
    assert error.diagnostics[0].line > 0
