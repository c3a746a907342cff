class InvalidInput(ValueError):
    """A request's input cannot be processed; the message tells the caller what to fix.

    ``reason`` is a short label for the data-quality counter on Triton's /metrics
    (``triton_stack_data_quality_total{model, reason}``): empty, too_long, out_of_range ...
    """

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason
