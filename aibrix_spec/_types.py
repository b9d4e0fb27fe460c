"""Reusable constrained field types of the InferenceStack API, and the literal-secret check.

Names become Kubernetes object names and label values, so they are DNS-1123 labels
(lowercase alphanumerics and '-', at most 63 characters, alphanumeric at both ends).
Quantities follow the Kubernetes resource-quantity grammar (``64Gi``, ``500M``, ``1.5``).

Secrets are accepted only by reference (the name of a Kubernetes Secret).
:func:`find_literal_secret` recognises the shapes of credentials people paste by mistake
(Hugging Face, OpenAI-style and GitHub tokens, AWS access keys, any URL whose user info
holds a password, even with an empty user name, and signed or token query parameters)
so the spec and the compiler can refuse them with a hint; :func:`credential_like_name`
tells which environment variable names hold a credential (the compiler's cross-reference
pass refuses literal values for them in ``engine.env``).

Values that reach another language are held to a safe character set here, so renderers
paste them without escaping: :data:`ServedModelName` (PromQL label matchers, engine
flags, Ray's shell line), :data:`LabelKey`/:data:`LabelValue` (tolerations and node
labels), :data:`ResourceName`. Label maps, environment names and engine flags (names, and
values free of control characters) are checked by the compiler's cross-reference pass,
and source URIs (no spaces, quotes or ``..`` segments) by :class:`~aibrix_spec.SourceSpec`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

__all__ = [
    "DNS_LABEL_PATTERN",
    "DnsLabel",
    "Quantity",
    "SecretName",
    "Duration",
    "NoSecretStr",
    "find_literal_secret",
    "spec_error",
    "reject_literal_secret",
    "LabelKey",
    "LabelValue",
    "ResourceName",
    "ServedModelName",
    "credential_like_name",
]

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A Secret's name is a DNS-1123 subdomain (dots allowed).
_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
_DURATION_PATTERN = r"^[0-9]+(ms|s|m|h)$"

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
SecretName = Annotated[str, Field(min_length=1, max_length=253, pattern=_SUBDOMAIN_PATTERN)]
Quantity = Annotated[str, Field(min_length=1, pattern=_QUANTITY_PATTERN)]
Duration = Annotated[str, Field(min_length=2, pattern=_DURATION_PATTERN)]

# (regex, what it looks like) -- checked in order; the first match names the problem.
_SECRET_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "a Hugging Face access token"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), "an API secret key"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), "a GitHub token"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    # scheme://[user]:password@host -- the user may be empty (redis://:pw@host)
    # (the look-behind keeps the search linear: a scheme starts only where one could begin)
    (re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s]*:[^/?#@\s]*@"), "a password inside a URL"),
    # ?token=, &access_token=, X-Amz-Signature=, X-Goog-Credential=, sig= (Azure SAS), key= ...
    (
        re.compile(
            r"[?&;]([A-Za-z0-9_.-]*(token|password|passwd|pwd|secret|signature|credential|api[_-]?key|apikey)"
            r"|sig|key|auth)=[^&#\s]",
            re.I,
        ),
        "a credential in a URL query",
    ),
)

LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# [prefix/]name: prefix a DNS-1123 subdomain, name like a label value but non-empty.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
#: An OpenAI model name: no quotes, braces, parentheses, spaces or backslashes, so it can be
#: pasted into PromQL string literals and command lines as it is.
SERVED_MODEL_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/:-]*[A-Za-z0-9])?$"
RESOURCE_NAME_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"

# A name part that says the variable holds a credential: HF_TOKEN, AWS_SECRET_ACCESS_KEY,
# OPENAI_API_KEY, REDIS_PASSWORD, GOOGLE_APPLICATION_CREDENTIALS ... (whole parts only, so
# TOKENIZERS_PARALLELISM and MAX_TOKENS are fine).
_CREDENTIAL_NAME = re.compile(
    r"(^|_)(TOKEN|PASSWORD|PASSWD|PWD|SECRET|CREDENTIALS?|APIKEY|API_KEY|ACCESS_KEY|PRIVATE_KEY|AUTH)(_|$)"
)


def spec_error(
    message: str, *, expected: str = "", got: str = "", choices: tuple[str, ...] = (), hint: str = ""
) -> PydanticCustomError:
    """An error a validator raises with structured context the compiler renders.

    ``choices`` and ``got`` let the compiler add a "did you mean" hint; ``expected`` and
    ``hint`` become the message's "expected:" and "hint:" lines.
    """
    escaped = message.replace("{", "{{").replace("}", "}}")
    return PydanticCustomError(
        "aibrix_spec",
        escaped,
        {"expected": expected, "got": got, "choices": list(choices), "hint": hint},
    )


def find_literal_secret(value: str) -> str | None:
    """Return what kind of credential ``value`` seems to contain, or None.

    >>> find_literal_secret("hf://meta-llama/Meta-Llama-3-8B")
    >>> find_literal_secret("https://user:hunter2@example.com/m")
    'a password inside a URL'
    """
    for pattern, what in _SECRET_SHAPES:
        if pattern.search(value):
            return what
    return None


def reject_literal_secret(value: str) -> str:
    """Pydantic after-validator: refuse a string that embeds a credential."""
    what = find_literal_secret(value)
    if what is not None:
        raise spec_error(
            f"this value contains {what}",
            expected="no credentials inline; secrets are accepted only by reference",
            hint="store the credential in a Kubernetes Secret and name that Secret in a secretRef field",
        )
    return value


NoSecretStr = Annotated[str, AfterValidator(reject_literal_secret)]


def credential_like_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential.

    >>> credential_like_name("AWS_SECRET_ACCESS_KEY"), credential_like_name("TOKENIZERS_PARALLELISM")
    (True, False)
    """
    return bool(_CREDENTIAL_NAME.search(name.upper()))


LabelKey = Annotated[str, Field(min_length=1, max_length=317, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
ServedModelName = Annotated[str, Field(min_length=1, max_length=128, pattern=SERVED_MODEL_NAME_PATTERN)]
ResourceName = Annotated[str, Field(min_length=1, max_length=253, pattern=RESOURCE_NAME_PATTERN)]
