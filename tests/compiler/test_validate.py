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
