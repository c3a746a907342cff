"""``python -m tritonstack.loadtest cost``: dollars per million requests from a run's measured throughput.

:mod:`.cloud`: GPU-hour prices per GPU and the recommendation; :mod:`.modal`: a Modal deployment's
containers and cost. Prices and specifications: ``gpus.toml`` beside them.
"""

from tritonstack.loadtest.cost.cloud import (
    PRICES_FILE,
    CostInputError,
    CostRow,
    Gpu,
    Measurement,
    cost_rows,
    find_gpu,
    load_prices,
    read_report,
    recommend,
    same_gpu,
)

__all__ = ["PRICES_FILE", "CostInputError", "CostRow", "Gpu", "Measurement", "cost_rows", "find_gpu", "load_prices",
           "read_report", "recommend", "same_gpu"]
