"""The tokenizer step's text handling: one implementation, shared with the python-ort runner's
text front (:mod:`converters.runtime.text`)."""

from converters.runtime.text import DEFAULT_MAX_CHARS, Encoded, decode_texts, encode, load_tokenizer, trim

__all__ = ["DEFAULT_MAX_CHARS", "Encoded", "decode_texts", "encode", "load_tokenizer", "trim"]
