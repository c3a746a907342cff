from converters.runtime.text import InvalidInput  # one class: the runner's text front raises it too

__all__ = ["InvalidInput"]
