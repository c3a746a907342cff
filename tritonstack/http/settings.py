"""What the front needs to know, in one frozen dataclass (the CLI fills it; tests build it)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tritonstack.client import ClientConfig

TOKEN_ENV = "TRITONSTACK_HTTP_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclasses.dataclass(frozen=True)
class Settings:
    """The front's configuration.

    Attributes:
        client: how to reach Triton (urls, deadline, retries, Triton's own access token).
        token: bearer token every route but ``/health`` requires (None: no auth).
        embed_model: the pipeline TEI's ``/embed`` (and ``POST /``) serves; OpenAI's
            ``/v1/embeddings`` serves any ready embedding pipeline by its ``model`` field.
        rerank_model, classify_model: the pipelines behind TEI's ``/rerank`` and ``/predict``
            (None: those routes answer 424, as TEI does for a model of another kind).
        model_repository: the repository Triton serves, read for the tokenizers that count
            ``usage`` tokens and check lengths (None: no counts; ``usage`` is null).
        max_inputs: the most texts one request may hold (413 above).
        max_body_bytes: the largest request body (413 above).
        retry_after_s: the Retry-After sent with 429 and 503.
        models_ttl_s: how long the list of served pipelines is cached.
    """

    client: ClientConfig = dataclasses.field(default_factory=ClientConfig)
    token: str | None = None
    embed_model: str = "embed"
    rerank_model: str | None = None
    classify_model: str | None = None
    model_repository: Path | None = None
    max_inputs: int = 64
    max_body_bytes: int = 4 * 1024 * 1024
    retry_after_s: float = 1.0
    models_ttl_s: float = 10.0

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.strip():
            raise ValueError(f"the bearer token is empty; unset {TOKEN_ENV} or give a value")
        if self.max_inputs < 1:
            raise ValueError(f"max_inputs must be at least 1, got {self.max_inputs}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
        if self.model_repository is not None and not Path(self.model_repository).is_dir():
            raise ValueError(f"model repository {self.model_repository} is not a folder")


def token_from_env() -> str | None:
    """The bearer token from ``TRITONSTACK_HTTP_TOKEN`` (None when unset or empty)."""
    return os.environ.get(TOKEN_ENV) or None
