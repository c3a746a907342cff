"""Running a campaign: the runner (:mod:`.run`: start Triton, preflight, Locust headless, report),
the Locust side (:mod:`.locustfile`, :mod:`.shapes`, :mod:`.users`, :mod:`.pacing`, :mod:`.payloads`),
the windows' statistics (:mod:`.stats`, :mod:`.results`), the server's metrics (:mod:`.metrics`) and
the live progress line (:mod:`.progress`). Empty on purpose: the Locust processes import their
modules without the runner's."""
