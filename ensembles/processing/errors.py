class InvalidInput(ValueError):
    """A request's input cannot be processed; the message tells the caller what to fix."""
