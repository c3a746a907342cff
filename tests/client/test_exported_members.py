"""The public API is exactly the facade's ``__all__``."""

from __future__ import annotations

import tritonstack.client as client

EXPECTED = {
    "AsyncClient", "Client", "ClientConfig", "ClientError", "DigitPredictions", "ModelInfo",
    "ModelState", "ReplicaHealth", "Status", "TensorSpec", "TextPredictions", "TlsConfig", "is_shed",
}


def test_exported_names_are_exactly_the_public_api() -> None:
    assert set(client.__all__) == EXPECTED
    assert len(client.__all__) == len(EXPECTED)


def test_every_exported_name_exists_and_belongs_to_the_package() -> None:
    for name in client.__all__:
        member = getattr(client, name)
        assert member.__module__.startswith("tritonstack.client."), name
        assert member.__doc__, f"{name} has no docstring"


def test_no_other_public_names_leak_from_the_facade() -> None:
    public = {n for n in vars(client) if not n.startswith("_")}
    # Submodules appear as attributes once imported; they are private (underscored) or tools.
    assert public - EXPECTED <= {"cli", "bench"}
