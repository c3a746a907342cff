"""Triton Python-backend model that runs an ONNX file with ONNX Runtime (the ``python-ort`` target).

This adapter is copied next to ``model.onnx`` as ``REPO/NAME/VERSION/model.py``, with the
``serving`` package beside it (``VERSION/serving/``, the copy this version carries); it needs
numpy, onnxruntime and, for a model that takes raw text, ``tokenizers``. The work is done by
pure functions of that package, tested without Triton.

What ``execute`` does with one dynamic batch:

1. checks each request alone (dtype, rank, fixed dims, equal lengths on axes the ONNX graph
   names alike, e.g. ``input_ids`` and ``attention_mask`` both ``sequence_length``); a bad
   request gets an error response and the rest of the batch still runs;
2. sorts the good requests by length and cuts them into as few runs as keep padding under
   ``max_padding_fraction`` of the work (``plan_runs``); each run pads its variable-length axes
   to its longest request (value 0: padding ids are masked out by ``attention_mask = 0``) and is
   ONE ``session.run``. Without this, one long sentence in a batch of 30 short ones makes the
   whole batch pay for its length: batches grow under load, so an overloaded server would get
   slower per request exactly when it needs to be faster, and stay overloaded after the load
   drops (measured: embed served 110 rps after a 3x spike, 400 before). A text request's
   sentences are planned one by one when every output row has a fixed shape (a sentence
   embedding): requests of four sentences, each padded to its longest, cost MiniLM's stubs
   1,550-1,600 us a sentence against 1,360-1,410 planned per sentence, and served 11 % fewer
   sentences (perf_analyzer -b 4, AMD Zen 5, README "Pipelines at the hardware's limit");
3. splits each output back per request, trimming padded axes that the graph names like an
   input axis (e.g. ``token_embeddings [batch, sequence_length, 384]``).

Config ``parameters`` (all optional, string values):

* ``onnx_file``: model file inside the version folder (default ``model.onnx``);
* ``intra_op_thread_count`` / ``inter_op_thread_count``: ORT thread pools (default 0 = ORT's);
* ``max_padding_fraction``: the most of a run's tensor volume that may be padding before the
  batch is cut into another run (default 0.25; 1 = always one run);
* ``value_ranges``: ``input:low:high,...``, integer inputs must lie in ``[low, high)`` (token
  ids below the vocabulary size; a negative id would silently read another embedding row),
  floating-point inputs in ``[low, high]`` and finite (pixels on the scale the model was
  trained on: a graph that scales its own input cannot tell 0..255 from 0..16);
* ``axis_limits``: ``axis:longest,...``, e.g. ``sequence_length:512`` (the position embeddings);
* ``admit_rows``: the most rows one execution computes (default 0 = all). Past it, the batch's
  oldest requests are refused before any tokenizing or compute (UNAVAILABLE, "overloaded: ...",
  counted in ``triton_stack_shed_total{model}``) and the newest are served (:func:`admitted`).
  Triton hands the runner more than that only when requests queued faster than the instances
  took them, so this bounds the wait of what is served. It sheds load the way a queue policy
  would, but a queue policy turns off Triton 2.51's batch prefetching, and then the batcher
  stalls for 500 ms whenever every caller is queued and an instance frees (docs/benchmarks.md, "Goodput
  under overload");
* ``admit_ms``: a bound in milliseconds on a served request's time in the model, its wait in
  the queue plus its execution (default 0 = none). Each execution computes the rows that the
  rest of the budget holds at this instance's own measured cost (``serving.admission``): the
  same latency on every CPU, where a count of rows is one CPU's figure. With both, the smaller
  limit wins;
* ``execution_providers``: comma list in priority order, e.g.
  ``TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider``; providers this
  onnxruntime build lacks are dropped (logged). Default ``CPUExecutionProvider``;
* ``text_input`` (with ``tokenizer_file``, ``max_length``, ``pad_token``, ``max_chars``): the
  model takes raw text in that BYTES input and tokenizes it here (:class:`TextFront`; written by
  ``converters.repository.serve_text``);
* ``drift_window``: rows the drift scores are measured over (default: the profile's, 1,000;
  0 turns drift monitoring off);
* ``drift_sample_ms``: a batch is measured only if the last measured one is at least this old
  (default 20: at most 50 batches a second). Measuring a batch costs about 100 us of CPU in a
  stub; at the headline's ~600 batches a second every batch would cost ~11 % of a core (AMD
  Zen 5, `loadtest run headline`), a sample of them under 1 %. Light traffic is measured whole.

At load (``initialize``), before the model takes traffic:

1. **Kernel probe** (``serving.cpu``). A 1 x 64 ``MatMulInteger`` of 255 (uint8) by 127 (int8) tells in a
   millisecond whether this CPU's u8 x s8 kernel sums pairs in int16 and saturates (AVX2 only,
   AVX-512 without VNNI) or is exact (VNNI, AMX). Where it saturates, the session gets
   ``session.x64quantprecision=1`` (ORT then runs int8 weights on its exact u8 x u8 kernels):
   decided by what the kernel computes, not by a list of CPU names.
2. **Golden self-check** (``serving.golden``). ``golden.npz`` beside the model holds a few inputs, the FP32
   reference outputs and this file's outputs on the build CPU; ``metadata.json["golden"]``
   holds the bounds. The model is run on them here; a version that misses a bound on this CPU
   fails to load with the figures, the CPU and the kernel in Triton's reason, and the version
   already serving keeps serving. ``python -m tritonstack.converters verify`` runs the same check.

In serving, when the version has ``profile.json`` (the export's reference), every batch's
features go into a sliding window and the Population Stability Index of each feature against
the reference is published on Triton's ``/metrics`` as
``triton_stack_drift_psi{model, version, feature}`` (with ``triton_stack_drift_window_rows``),
at most once a second (``serving.drift``, ``serving.metrics``).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the serving package this version carries
from serving.admission import SHED_MESSAGE, Admission, admitted  # noqa: E402
from serving.batching import concat_padded, plan_runs, split_outputs  # noqa: E402
from serving.cpu import describe_cpu, int8_config_entries, int8_kernel  # noqa: E402
from serving.errors import InvalidInput  # noqa: E402
from serving.golden import golden_check, golden_failure_message  # noqa: E402
from serving.metrics import RefusalCounter, drift_metrics  # noqa: E402
from serving.priority import lowest_cpu_priority, shadow_candidate  # noqa: E402
from serving.requests import TRITON_TO_NUMPY, Limits, TensorInfo, check_request, onnx_axes  # noqa: E402
from serving.session import make_session, parse_parameters  # noqa: E402


class TritonPythonModel:
    """Thin adapter: config parsed once in ``initialize``; one ``session.run`` per batch."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = parse_parameters(config)
        folder = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(folder, params.get("onnx_file", "model.onnx"))
        device_id = int(args.get("model_instance_device_id", 0) or 0)
        if shadow_candidate(args["model_repository"], int(args["model_version"])):
            lowest_cpu_priority()  # before the session: ORT's threads inherit it
            pb_utils.Logger.log_info(f"{args['model_name']} v{args['model_version']}: shadow candidate, "
                                     "runs at the lowest CPU priority (SCHED_IDLE)")
        self.session, dropped = make_session(path, params, device_id, int8_config_entries())
        if dropped:
            pb_utils.Logger.log_warn(f"execution providers not available here, dropped: {dropped}")
        golden = golden_check(self.session, folder)
        if golden is not None and not golden.ok:
            raise pb_utils.TritonModelException(golden_failure_message(golden))
        if golden is not None:
            pb_utils.Logger.log_info(f"{args['model_name']} v{args['model_version']}: golden self-check "
                                     f"passed on {describe_cpu()}, int8 kernel {int8_kernel()}: "
                                     f"{golden.summary()}")
        onnx_inputs = {i.name: i.shape for i in self.session.get_inputs()}
        onnx_outputs = {o.name: o.shape for o in self.session.get_outputs()}
        self.inputs = [
            TensorInfo(c["name"], np.dtype(TRITON_TO_NUMPY[c["data_type"]]),
                       onnx_axes(onnx_inputs[c["name"]], [int(d) for d in c["dims"]]))
            for c in config["input"] if c["name"] in onnx_inputs
        ]
        self.text = None
        if params.get("text_input"):
            # Rust's thread pool for a batch of a few short texts costs more CPU than it saves
            # (AMD Zen 5, 3 texts of 16 tokens: 72 us a row with it, 30 without), and every
            # instance would start its own on the cores ORT computes on.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from serving.text import TextFront  # needs tokenizers, which only text models use

            self.text = TextFront(args["model_repository"], params, [i.name for i in self.inputs])
        self.outputs = [
            TensorInfo(c["name"], np.dtype(TRITON_TO_NUMPY[c["data_type"]]),
                       onnx_axes(onnx_outputs[c["name"]], [int(d) for d in c["dims"]]))
            for c in config["output"]
        ]
        self.output_names = [o.name for o in self.outputs]
        # A text request's rows are planned one by one when every output row has a fixed shape
        # (a sentence embedding, logits): rows then reassemble by concatenation. An output with
        # a token axis keeps the request whole.
        self.per_text = not any(isinstance(a, str) for o in self.outputs for a in o.axes)
        self.max_padding = float(params.get("max_padding_fraction", "0.25") or 0.25)
        self.limits = Limits.from_parameters(params)
        self.drift = drift_metrics(folder, params, args["model_name"], args["model_version"])
        self.quality = RefusalCounter(args["model_name"])
        self.admission = Admission(int(params.get("admit_rows", "0") or 0),
                                   float(params.get("admit_ms", "0") or 0))
        self.shed = RefusalCounter(args["model_name"], "triton_stack_shed_total",
                                   "requests refused unserved because more rows were queued than "
                                   "one execution computes (admit_rows, admit_ms)")

    def execute(self, requests: list) -> list:
        started, started_cpu = time.perf_counter(), time.process_time()
        responses: list = [None] * len(requests)
        arrived: list[tuple[int, dict[str, np.ndarray]]] = []  # request index, its token arrays
        texts: list[tuple[int, list[str]]] = []
        row_counts = [0] * len(requests)  # a refused request computes nothing
        for i, request in enumerate(requests):
            try:
                raw = (pb_utils.get_input_tensor_by_name(request, self.text.name)
                       if self.text is not None else None)
                if raw is not None:
                    texts.append((i, self.text.decode(raw.as_numpy())))
                    row_counts[i] = len(texts[-1][1])
                else:
                    arrived.append((i, self._arrays(request)))
                    row_counts[i] = len(next(iter(arrived[-1][1].values()), ()))
            except InvalidInput as exc:
                responses[i] = self._refuse(exc)
        limit = self.admission.limit(started)
        first = len(requests) - admitted(row_counts, limit)
        if first:  # before tokenizing: a refusal costs no compute
            waiting = sum(row_counts)
            for i in range(first):
                if responses[i] is None:
                    responses[i] = self._shed(waiting, limit)
            texts = [(i, t) for i, t in texts if i >= first]
            arrived = [(i, a) for i, a in arrived if i >= first]
        units: list[tuple[int, dict[str, np.ndarray]]] = list(arrived)  # (request, arrays)
        if texts:  # every text of the batch in one tokenizer call
            encoded, truncated = self.text.encode([rows for _, rows in texts], self.per_text)
            self.quality.count("truncated", truncated)
            units += [(i, part) for (i, _), parts in zip(texts, encoded, strict=True) for part in parts]
        owners: list[int] = []
        batches: list[dict[str, np.ndarray]] = []
        sizes: list[dict[str, int]] = []
        for i, arrays in units:
            if responses[i] is not None:  # one of its texts was refused: so is the request
                continue
            try:
                sizes.append(check_request(arrays, self.inputs, self.limits))
            except InvalidInput as exc:
                responses[i] = self._refuse(exc)
                continue
            owners.append(i)
            batches.append(arrays)
        computed: list[dict[str, np.ndarray] | None] = [None] * len(owners)
        for run in plan_runs(sizes, self.max_padding) if owners else []:
            feed = concat_padded([batches[j] for j in run], self.inputs)
            try:
                values = self.session.run(self.output_names, feed)
            except Exception as exc:  # an ORT failure on valid-looking input fails this batch
                raise pb_utils.TritonModelException(f"onnxruntime failed: {exc}") from exc
            if self.drift is not None:
                self.drift.observe(feed, values[0])
            per_unit = split_outputs(dict(zip(self.output_names, values, strict=True)),
                                     [sizes[j] for j in run], self.outputs)
            for j, outputs in zip(run, per_unit, strict=True):
                computed[j] = outputs
        parts: dict[int, list[dict[str, np.ndarray]]] = {}
        for j, i in enumerate(owners):
            if responses[i] is None and computed[j] is not None:
                parts.setdefault(i, []).append(computed[j])
        for i, pieces in parts.items():  # a request's units in its row order
            tensors = [pb_utils.Tensor(name, pieces[0][name] if len(pieces) == 1 else
                                       np.concatenate([p[name] for p in pieces]))
                       for name in self.output_names]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        ended = time.perf_counter()
        self.admission.observe(sum(row_counts[i] for i in parts), ended - started,
                               time.process_time() - started_cpu, ended)
        for i, response in enumerate(responses):
            if response is None:  # it held no row (an empty TEXT)
                responses[i] = self._refuse(InvalidInput("the request has no rows; send at least one",
                                                       "empty"))
        return responses

    def _arrays(self, request) -> dict[str, np.ndarray]:
        arrays = {}
        for info in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, info.name)
            if tensor is None:
                raise InvalidInput(f"input '{info.name}' is missing", "missing")
            arrays[info.name] = tensor.as_numpy()
        return arrays

    def _refuse(self, exc: InvalidInput):
        """INVALID_ARGUMENT for this request alone, counted under its reason."""
        self.quality.count(exc.reason)
        return pb_utils.InferenceResponse(
            error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))

    def _shed(self, waiting: int, limit: int):
        """UNAVAILABLE, as Triton's own queue policy refuses (clients treat it as overload)."""
        self.shed.count("overloaded")
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(
            f"{SHED_MESSAGE} ({waiting} rows waited for one execution of at most {limit}, "
            f"{self.admission.why()}); retry after a back-off", pb_utils.TritonError.UNAVAILABLE))

    def finalize(self) -> None:
        if self.drift is not None and self.drift.timer is not None:
            self.drift.timer.cancel()
        self.session = None
