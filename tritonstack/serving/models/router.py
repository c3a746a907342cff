"""The router step (``MODEL_router``): stands where ``MODEL`` stood in every ensemble while a
rollout runs, and sends each request to the primary or the candidate version of ``MODEL`` through
Triton's BLS, as ``rollout.json`` says (``serving.split``).

* Requests of one arm and one shape in a batch go to that version as one request; the model's own
  dynamic batcher, queue bound and golden check stay as they are.
* ``execute`` hands each group to a thread and returns at once; each request is answered through
  its response sender (one final response each). One instance then keeps many batches in flight:
  Triton 2.51 runs a Python model's ``execute`` (async or not) one at a time per instance.
* A candidate that fails is not the caller's problem: the primary answers and the failure is
  counted (``outcome="fallback"``). A failing group is retried request by request, so one bad
  request is refused alone.
* ``compare`` % of requests are also sent to the other arm in the background and the answers
  compared (``serving.agreement``); the caller never waits for it. Copies are gathered for
  ``compare_ms`` (20) and sent as one request per arm and shape, and skipped past
  ``compare_rows`` queued rows (4 batches), so they cost the candidate a share of a batch.

Config parameters: ``target`` (the model), ``kind`` (embedding | classification | score),
``compare_ms``, ``compare_rows``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the serving package this version carries
from serving.agreement import compare  # noqa: E402
from serving.split import STATE_FILE, Split, SplitFile, choose, compared  # noqa: E402
from serving.tally import LATENCY_BUCKETS_S, Tally, bucket_label  # noqa: E402

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
PUBLISH_S = 0.5


@dataclasses.dataclass
class Item:
    sender: Any
    arrays: dict[str, np.ndarray]
    rows: int
    compare: bool
    wanted: frozenset[str]


@dataclasses.dataclass
class Copy:
    """Rows answered by ``served``, to be asked of ``other`` and compared."""

    candidate: int
    served: int
    other: int
    inputs: dict[str, np.ndarray]
    served_output: np.ndarray


class Failure(Exception):
    def __init__(self, error: Any):
        super().__init__(error.message())
        self.error = error


class Publisher:
    """The tallies as counters on Triton's /metrics, sent at most every ``PUBLISH_S`` (a metric
    update is a message to the Triton process) and by a timer when traffic stops."""

    def __init__(self, model: str):
        self.model = model
        counter = pb_utils.MetricFamily.COUNTER
        self.families = {
            name: pb_utils.MetricFamily(name=name, description=text, kind=counter)
            for name, text in (
                ("triton_stack_rollout_requests_total", "requests per version and outcome"),
                ("triton_stack_rollout_latency_seconds_bucket", "requests answered within le seconds"),
                ("triton_stack_rollout_latency_seconds_sum", "seconds spent, per version"),
                ("triton_stack_rollout_latency_seconds_count", "requests timed, per version"),
                ("triton_stack_rollout_compared_total", "rows answered by both arms"),
                ("triton_stack_rollout_agreement_sum", "sum of the compared rows' agreement"),
                ("triton_stack_rollout_agreement_sq_sum", "sum of the squares of that agreement"),
                ("triton_stack_rollout_distance_sum", "sum of the compared rows' distance"),
                ("triton_stack_rollout_compare_skipped_total", "copies not sent: comparisons at their bound"),
                ("triton_stack_rollout_split_refused_total",
                 "rollout.json versions that were not a valid split (the last good split held)"),
            )}
        self.metrics: dict[tuple, Any] = {}

    def add(self, family: str, value: float, **labels: object) -> None:
        if value <= 0:
            return
        key = (family, tuple(sorted(labels.items())))
        metric = self.metrics.get(key)
        if metric is None:
            metric = self.metrics[key] = self.families[family].Metric(
                labels={"model": self.model, **{k: str(v) for k, v in labels.items()}})
        metric.increment(float(value))

    def publish(self, tally: Tally) -> None:
        for (version, role, outcome), n in tally.requests.items():
            self.add("triton_stack_rollout_requests_total", n, version=version, role=role, outcome=outcome)
        for version, counts in tally.cumulative_buckets().items():
            for bound, n in zip(LATENCY_BUCKETS_S, counts, strict=True):
                self.add("triton_stack_rollout_latency_seconds_bucket", n, version=version,
                         le=bucket_label(bound))
            self.add("triton_stack_rollout_latency_seconds_count", counts[-1], version=version)
        for version, seconds in tally.latency_sum.items():
            self.add("triton_stack_rollout_latency_seconds_sum", seconds, version=version)
        for name, counts in (("compared_total", tally.compared), ("agreement_sum", tally.agreement_sum),
                             ("agreement_sq_sum", tally.agreement_sq_sum),
                             ("distance_sum", tally.distance_sum),
                             ("compare_skipped_total", tally.skipped)):
            for version, value in counts.items():
                self.add(f"triton_stack_rollout_{name}", value, version=version)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.target, self.kind = params["target"], params["kind"]
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        repository = Path(args["model_repository"]).parent  # args give this model's own folder
        self.split_file = SplitFile(repository / self.target / STATE_FILE)
        self.refused_published = 0
        self.rng = random.Random()
        self.pool = ThreadPoolExecutor(int(params.get("workers", 16)), thread_name_prefix="route")
        self.max_batch = max(1, int(config.get("max_batch_size", 0)) or 1)
        self.compare_s = float(params.get("compare_ms", 20)) / 1000
        self.compare_rows = int(params.get("compare_rows", 4 * self.max_batch))
        self.compare_queue: list[Copy] = []
        self.compare_queued = 0
        self.compare_lock = threading.Lock()
        self.tally = Tally()
        self.publisher = Publisher(self.target)
        self.published = time.monotonic()
        self.publish_lock = threading.Lock()
        self.stopping = threading.Event()
        self.timer = threading.Thread(target=self._publish_loop, daemon=True)
        self.timer.start()
        self.comparer = threading.Thread(target=self._compare_loop, daemon=True)
        self.comparer.start()

    # -- routing -----------------------------------------------------------------------------
    def execute(self, requests: list) -> None:
        split = self.split_file.current()
        groups: dict[tuple, list[Item]] = {}
        for request in requests:
            arrays = {}
            for name in self.inputs:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    arrays[name] = tensor.as_numpy()
            rows = next(iter(arrays.values())).shape[0] if arrays else 0
            version = choose(split, _key(request, split.key), self.rng)
            shape = tuple((n, a.shape[1:]) for n, a in arrays.items())
            wanted = frozenset(request.requested_output_names()) or frozenset(self.outputs)
            groups.setdefault((version, shape), []).append(
                Item(request.get_response_sender(), arrays, rows, compared(split, self.rng), wanted))
        self._maybe_publish()
        for (version, _), items in groups.items():
            self.pool.submit(self._send, split, version, items)
        return None

    def _send(self, split: Split, version: int, items: list[Item]) -> None:
        for item, response in self._serve(split, version, items):
            item.sender.send(response, flags=FINAL)

    def _serve(self, split: Split, version: int, items: list[Item]) -> list[tuple[Item, Any]]:
        """A response for each item (an error for a bad one alone)."""
        try:
            outputs, version = self._answer(split, version, items)
        except Failure as exc:
            if len(items) > 1:  # find the bad request(s): each alone
                return [pair for item in items for pair in self._serve(split, version, [item])]
            return [(items[0], pb_utils.InferenceResponse(error=exc.error))]
        except Exception as exc:  # a bug here must still answer every caller
            error = pb_utils.TritonError(f"rollout router: {type(exc).__name__}: {exc}")
            return [(item, pb_utils.InferenceResponse(error=error)) for item in items]
        answered, start = [], 0
        for item in items:
            # Only the outputs the caller asked for: the response sender drops the others with the
            # GIL released (python_backend ResponseSender::Send -> PruneOutputTensors, r24.10 to
            # this day), and a numpy array freed without the GIL corrupts the heap of a stub whose
            # threads run Python at the same time. That killed this router's stub about once in
            # three test runs ("Stub process ... is not healthy" from then on; a libpython segfault
            # in dmesg) when the ensemble asked for two of its three outputs.
            tensors = [pb_utils.Tensor(n, a[start:start + item.rows]) for n, a in outputs.items()
                       if n in item.wanted]
            answered.append((item, pb_utils.InferenceResponse(output_tensors=tensors)))
            start += item.rows
        chosen = [i for i, item in enumerate(items) if item.compare]
        if chosen:
            self._compare_later(split, version, items, chosen, outputs)
        return answered

    def _answer(self, split: Split, version: int, items: list[Item]) -> tuple[dict, int]:
        """The outputs for ``items`` and the version that gave them (the primary's when the
        candidate failed)."""
        batch = _concat([item.arrays for item in items])
        role = "candidate" if version == split.candidate else "primary"
        start = time.perf_counter()
        try:
            outputs = self._infer(version, batch)
        except Failure:
            if version == split.primary:
                now = self.split_file.current()
                if now.primary != version:  # planned just before a promote unloaded this version
                    return self._answer(now, now.primary, items)
                self.tally.served(version, role, "error", len(items), time.perf_counter() - start)
                raise
            self.tally.served(version, role, "fallback", len(items), 0.0)
            return self._answer(split, split.primary, items)
        self.tally.served(version, role, "ok", len(items), time.perf_counter() - start)
        return outputs, version

    def _infer(self, version: int, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=self.target, model_version=int(version), requested_output_names=self.outputs,
            inputs=[pb_utils.Tensor(n, a) for n, a in batch.items()])
        response = request.exec()
        if response.has_error():
            raise Failure(response.error())
        return {n: pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in self.outputs}

    # -- comparison --------------------------------------------------------------------------
    def _compare_later(self, split: Split, served: int, items: list[Item], chosen: list[int],
                       outputs: dict[str, np.ndarray]) -> None:
        """Queue copies for the comparer; past ``compare_rows`` queued rows they are skipped (and
        counted), so comparisons never pile up behind a slow arm."""
        candidate = split.candidate
        if candidate is None:
            return
        rows = sum(items[i].rows for i in chosen)
        with self.compare_lock:
            if self.compare_queued + rows > self.compare_rows:
                self.tally.skip(candidate, rows)
                return
            self.compare_queued += rows
            offsets = np.cumsum([0] + [item.rows for item in items])
            index = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in chosen])
            other = split.primary if served == candidate else candidate
            inputs = _concat([items[i].arrays for i in chosen])
            self.compare_queue.append(Copy(candidate, served, other, inputs, outputs[self.outputs[0]][index]))

    def _compare_loop(self) -> None:
        """Every ``compare_ms``, the queued copies go to the other arm as few large requests (one
        per arm and shape, up to the batch size): a copy then costs the candidate a share of a
        batch instead of a request of its own."""
        while not self.stopping.wait(self.compare_s):
            with self.compare_lock:
                copies, self.compare_queue = self.compare_queue, []
                self.compare_queued = 0
            groups: dict[tuple, list[Copy]] = {}
            for copy in copies:
                shape = tuple((n, a.shape[1:]) for n, a in copy.inputs.items())
                groups.setdefault((copy.candidate, copy.served, copy.other, shape), []).append(copy)
            for (candidate, served, other, _), group in groups.items():
                for chunk in _chunks(group, self.max_batch):
                    mine = np.concatenate([c.served_output for c in chunk])
                    try:
                        theirs = self._infer(other, _concat([c.inputs for c in chunk]))[self.outputs[0]]
                    except Failure:
                        self.tally.skip(candidate, len(mine))  # the other arm refused (queue full)
                        continue
                    primary_out, candidate_out = (theirs, mine) if served == candidate else (mine, theirs)
                    agree, distance = compare(self.kind, primary_out, candidate_out)
                    self.tally.agreement(candidate, agree, distance)

    # -- metrics -----------------------------------------------------------------------------
    def _maybe_publish(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.published < PUBLISH_S:
            return
        if not self.publish_lock.acquire(blocking=False):
            return
        try:
            self.published = time.monotonic()
            tally = self.tally.drain()
            if not tally.empty():
                self.publisher.publish(tally)
            refused = self.split_file.refused
            if refused > self.refused_published:
                self.publisher.add("triton_stack_rollout_split_refused_total", refused - self.refused_published)
                self.refused_published = refused
        finally:
            self.publish_lock.release()

    def _publish_loop(self) -> None:
        while not self.stopping.wait(PUBLISH_S):
            self._maybe_publish()

    def finalize(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=True)
        self.comparer.join(timeout=5)
        self._maybe_publish(force=True)


def _key(request: Any, name: str) -> str | None:
    raw = request.parameters()
    if not raw or name not in raw:
        return None
    value = json.loads(raw).get(name)
    return None if value is None else str(value)


def _chunks(copies: list[Copy], max_rows: int) -> list[list[Copy]]:
    """Consecutive copies in groups of at most ``max_rows`` rows (a copy larger than that alone)."""
    chunks: list[list[Copy]] = [[]]
    rows = 0
    for copy in copies:
        n = len(copy.served_output)
        if chunks[-1] and rows + n > max_rows:
            chunks.append([])
            rows = 0
        chunks[-1].append(copy)
        rows += n
    return [c for c in chunks if c]


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
