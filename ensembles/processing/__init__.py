"""Pure pre/post-processing functions, tested without Triton.

Each raises ``InvalidInput`` (a ``ValueError``) with a message fit to send back to the caller;
the Python-backend adapters turn it into an INVALID_ARGUMENT error for that request alone.
"""

from ensembles.processing.errors import InvalidInput

__all__ = ["InvalidInput"]
