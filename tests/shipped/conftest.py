"""What ships, tested in the shape it ships: the CPU image (podman), the GPU image's Python side
(Python 3.10), the client extra alone. They share the session's demo repository
(``demo_repository``, tests/conftest.py)."""
