"""An OpenAI- and TEI-compatible HTTP front for the served pipelines (extra: ``http``).

It calls Triton over gRPC through ``tritonstack.client``'s ``AsyncClient`` and imports nothing
else of the project but the command-line convention. Routes, errors and auth: docs/http.md.

    python -m tritonstack.http serve --url 127.0.0.1:8001 --model-repository model_repository

or, in any ASGI server::

    from tritonstack.http import Settings, create_app
    app = create_app(Settings())
"""

from tritonstack.http.app import create_app
from tritonstack.http.errors import ApiError
from tritonstack.http.settings import Settings

__all__ = ["ApiError", "Settings", "create_app"]
