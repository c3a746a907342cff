"""Code that runs inside Triton (copied into model repositories), kept importable for tests."""
