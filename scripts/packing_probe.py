"""Padding-free batching, probed in process: is a packed MiniLM run cheaper than the runner's runs?

    flock /tmp/bench.lock python scripts/packing_probe.py [--model-repository model_repository] [--model minilm]

Issue #35, item 2. The python-ort runner pads each run to its longest sentence and cuts a batch
into runs while padding stays under 25 % (``serving.batching.plan_runs``). Packing puts every
sentence of a batch into ONE row with no padding: position ids restart per sentence, an additive
attention bias is block-diagonal (a token sees only its own sentence), and mean pooling is a
matrix product with one row per sentence. This script derives that packed form from the served
ONNX file by rewiring three places of its graph (the position ids, the additive mask that feeds
every attention ``Add``, the appended pooling), then:

1. checks it: packed against each sentence run alone, for the FP32 file (must agree to float
   error) and the INT8 file (its per-tensor activation scales then span the packed row, as they
   span a batch now), and both against FP32 with the INT8 gate's metrics;
2. times it: CPU µs per sentence on the 1,000 evaluation sentences taken in arrival order in
   batches of 4, 8 and 16 (what Triton hands a stub), as the runner runs them today and packed.

A probe for a decision, not the served path: docs/benchmarks.md records what it measured.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

NEG = np.float32(-3.4028235e38)  # what the exported graph adds for a masked key


def pack_graph(source: Path, target: Path) -> None:
    """The packed form of an exported BERT-like encoder with the converters' appended pooling."""
    model = onnx.load(str(source))
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    # 1. position ids: the Gather that reads the position table takes them from a new input
    (gather,) = [n for n in graph.node if n.op_type == "Gather" and "position_embeddings" in n.input[0]]
    gather.input[1] = "position_ids"
    # 2. the additive mask: the tensor every attention score Add takes beside the scores
    adds = [n for n in graph.node if n.op_type == "Add" and n.name.endswith("attention/self/Add")]
    (bias,) = {n.input[1] for n in adds}
    for n in adds:
        n.input[1] = "attention_bias"
    # 3. pooling: mean over each sentence's tokens = pool @ hidden / count, one row per sentence
    (old,) = [n for n in graph.node if "pool_pooled" in n.output]
    graph.node.remove(old)
    graph.node.extend([
        helper.make_node("MatMul", ["pool", "last_hidden_state"], ["packed_sum"]),
        helper.make_node("ReduceSum", ["pool", "pool_axis_last"], ["packed_count_raw"], keepdims=1),
        helper.make_node("Max", ["packed_count_raw", "pool_min_count"], ["packed_count"]),
        helper.make_node("Div", ["packed_sum", "packed_count"], ["packed_mean"]),
        helper.make_node("Constant", [], ["packed_shape"],
                         value=helper.make_tensor("packed_shape", TensorProto.INT64, [2], [-1, 384])),
        helper.make_node("Reshape", ["packed_mean", "packed_shape"], ["pool_pooled"]),
    ])
    graph.input.extend([
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["rows", "tokens"]),
        helper.make_tensor_value_info("attention_bias", TensorProto.FLOAT, ["rows", 1, "tokens", "tokens"]),
        helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["rows", "sentences", "tokens"]),
    ])
    # prune what no output needs any more (the mask and position subgraphs, the old pooling)
    needed = {o.name for o in graph.output}
    producer = {o: n for n in graph.node for o in n.output}
    keep, stack = set(), list(needed)
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        stack.extend(node.input)
    kept = [n for n in graph.node if id(n) in keep]
    del graph.node[:]
    graph.node.extend(_topological(kept))
    used = {i for n in graph.node for i in n.input}
    for inp in list(graph.input):
        if inp.name not in used:
            graph.input.remove(inp)
    del graph.value_info[:]
    assert bias not in used
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def _topological(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    produced = {o for n in nodes for o in n.output}
    ready: set[str] = set()
    done, order, pending = set(), [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(i == "" or i not in produced or i in ready for i in n.input):
                order.append(n)
                ready.update(n.output)
                done.add(id(n))
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("cycle")
        pending = rest
    return order


def pack_rows(lengths: list[int], row_tokens: int) -> list[list[int]]:
    """Sentences (by index) into rows of at most ``row_tokens`` tokens, first fit by decreasing
    length; a sentence longer than a row gets a row of its own."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(row_tokens - lengths[i])
    return rows


def packed_feed(sentences: list[np.ndarray], row_tokens: int) -> tuple[dict[str, np.ndarray], list[int]]:
    """``sentences`` (token ids, unpadded) packed into rows of at most ``row_tokens`` tokens
    (padded to the longest row); and, per output row (row x sentence slot), the sentence it holds
    or -1."""
    lengths = [len(r) for r in sentences]
    rows = pack_rows(lengths, row_tokens)
    width = max(sum(lengths[i] for i in row) for row in rows)
    slots = max(len(row) for row in rows)
    ids = np.zeros((len(rows), width), np.int64)
    positions = np.zeros((len(rows), width), np.int64)
    bias = np.full((len(rows), 1, width, width), NEG, np.float32)
    pool = np.zeros((len(rows), slots, width), np.float32)
    owner = [-1] * (len(rows) * slots)
    for r, row in enumerate(rows):
        start = 0
        for s, i in enumerate(row):
            n = lengths[i]
            ids[r, start:start + n] = sentences[i]
            positions[r, start:start + n] = np.arange(n)
            bias[r, 0, start:start + n, start:start + n] = 0
            pool[r, s, start:start + n] = 1
            owner[r * slots + s] = i
            start += n
        bias[r, 0, start:, :] = 0  # padding rows attend to all: finite, and pooled by no slot
    return ({"input_ids": ids, "token_type_ids": np.zeros_like(ids), "position_ids": positions,
             "attention_bias": bias, "pool": pool}, owner)


def main() -> int:
    from tritonstack.converters.metrics import embedding_agreement
    from tritonstack.converters.repository import existing_versions
    from tritonstack.converters.steps.base import ort_session
    from tritonstack.demo.data import text_corpus
    from tritonstack.ensembles.build import MAX_LENGTH, minilm_tokenizer_file
    from tritonstack.serving.batching import concat_padded, plan_runs
    from tritonstack.serving.cpu import describe_cpu, int8_kernel
    from tritonstack.serving.requests import TensorInfo
    from tritonstack.serving.text import encode, load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--work", type=Path, default=Path("/tmp/packing_probe"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    def latest(name: str) -> Path:
        folder = args.model_repository / name
        return folder / str(existing_versions(folder)[-1]) / "model.onnx"

    def session(path: Path):  # one thread, as the python-ort runner serves it on this CPU
        return ort_session(path, 1, exact_int8=int8_kernel() != "exact")

    tokenizer = load_tokenizer(minilm_tokenizer_file(), MAX_LENGTH)
    texts = [t for t in text_corpus().evaluation if t]
    encoded = [encode(tokenizer, [t]) for t in texts]
    names = ("input_ids", "attention_mask", "token_type_ids")
    rows = [{n: getattr(e, n) for n in names} for e in encoded]
    ids = [r["input_ids"][0] for r in rows]
    infos = [TensorInfo(n, np.dtype(np.int64), ("sequence_length",)) for n in names]
    print(f"CPU: {describe_cpu()}; {len(rows)} sentences, {np.mean([len(i) for i in ids]):.1f} tokens on average")

    sessions = {}
    for precision, name in (("fp32", f"{args.model}_fp32"), ("int8", args.model)):
        packed = args.work / f"{precision}.packed.onnx"
        pack_graph(latest(name), packed)
        sessions[precision] = (session(latest(name)), session(packed))

    def as_served(plain, batch: int) -> tuple[np.ndarray, float]:
        out, cpu = [], time.process_time()
        for start in range(0, len(rows), batch):
            group = rows[start:start + batch]
            parts: list[np.ndarray | None] = [None] * len(group)
            for run in plan_runs([{"batch": 1, "sequence_length": r["input_ids"].shape[1]} for r in group]):
                values = plain.run(["embedding"], concat_padded([group[j] for j in run], infos))[0]
                for j, v in zip(run, values, strict=True):
                    parts[j] = v
            out.extend(parts)
        return np.stack(out), time.process_time() - cpu

    def packed_runs(packed, batch: int, row_tokens: int) -> tuple[np.ndarray, float]:
        out, cpu = [], time.process_time()
        for start in range(0, len(ids), batch):
            group = ids[start:start + batch]
            feed, owner = packed_feed(group, row_tokens)
            values = packed.run(["embedding"], feed)[0]
            ordered = np.empty((len(group), values.shape[1]), values.dtype)
            for slot, i in enumerate(owner):
                if i >= 0:
                    ordered[i] = values[slot]
            out.append(ordered)
        return np.concatenate(out), time.process_time() - cpu

    alone = {p: np.concatenate([s[0].run(["embedding"], r)[0] for r in rows]) for p, s in sessions.items()}
    print("\nPacked into rows of at most 64 tokens:")
    print("\n| precision | batch | packed vs each sentence alone: max abs diff, min cosine | "
          "packed vs FP32 alone: mean cosine, recall@10 |")
    print("|---|---:|---|---|")
    for precision, (_, packed) in sessions.items():
        for batch in (4, 8, 16):
            got, _ = packed_runs(packed, batch, 64)
            own = embedding_agreement(alone[precision], got)
            ref = embedding_agreement(alone["fp32"], got)
            print(f"| {precision} | {batch} | {np.abs(got - alone[precision]).max():.1e}, {own.min_cosine:.6f} | "
                  f"{ref.mean_cosine:.5f}, {ref.recall_at_10:.3f} |", flush=True)

    widths = (32, 64, 128, 100_000)
    print("\n| precision | batch | as served today: µs CPU/sentence | packed into rows of at most "
          + " / ".join(str(w) if w < 100_000 else "all" for w in widths) + " tokens |")
    print("|---|---:|---:|---|")
    for precision, (plain, packed) in sessions.items():
        for batch in (4, 8, 16):
            as_served(plain, batch)  # every shape once
            today = min(as_served(plain, batch)[1] for _ in range(3)) / len(rows) * 1e6
            cells = []
            for width in widths:
                packed_runs(packed, batch, width)
                new = min(packed_runs(packed, batch, width)[1] for _ in range(3)) / len(rows) * 1e6
                cells.append(f"{new:,.0f} ({new / today:.2f})")
            print(f"| {precision} | {batch} | {today:,.0f} | {' / '.join(cells)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
