"""Stand-ins for the exported encoder and classifier, so the steps and ensembles are tested
through Triton in seconds. Same names, IO and batching behaviour as the real exports."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.repos import write_python_model

ENCODER = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Bag of token ids hashed into 384 buckets, L2-normalised; pads ragged requests."""

    def execute(self, requests):
        out = []
        for r in requests:
            ids = pb_utils.get_input_tensor_by_name(r, "input_ids").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(r, "attention_mask").as_numpy()
            emb = np.zeros((len(ids), 384), np.float32)
            for i, (row, m) in enumerate(zip(ids, mask)):
                np.add.at(emb[i], row[m == 1] % 384, 1.0)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("embedding", emb)]))
        return out
'''

CLASSIFIER = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """logits[k] = mean intensity of image row k (rows 0..7; 8, 9 get zero)."""

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "image").as_numpy()
            logits = np.zeros((len(x), 10), np.float32)
            logits[:, :8] = x[:, 0].mean(axis=2)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("logits", logits)]))
        return out
'''


def reference_embedding(ids_rows: list[list[int]]) -> list[list[float]]:
    import numpy as np
    emb = np.zeros((len(ids_rows), 384), np.float32)
    for i, row in enumerate(ids_rows):
        np.add.at(emb[i], np.array(row) % 384, 1.0)
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).tolist()


def write_standins(repo: Path, encoder: str = "minilm", classifier: str = "digits_cnn") -> None:
    ids = "{{ name: \"{}\", data_type: TYPE_INT64, dims: [-1], allow_ragged_batch: true }}"
    write_python_model(repo, encoder, ENCODER, f"""\
        name: "{encoder}"
        backend: "python"
        max_batch_size: 64
        input [{", ".join(ids.format(n) for n in ("input_ids", "attention_mask", "token_type_ids"))}]
        output [{{ name: "embedding", data_type: TYPE_FP32, dims: [384] }}]
        dynamic_batching {{ max_queue_delay_microseconds: 500 }}
        """)
    write_python_model(repo, classifier, CLASSIFIER, f"""\
        name: "{classifier}"
        backend: "python"
        max_batch_size: 256
        input [{{ name: "image", data_type: TYPE_FP32, dims: [1, 8, 8] }}]
        output [{{ name: "logits", data_type: TYPE_FP32, dims: [10] }}]
        dynamic_batching {{ max_queue_delay_microseconds: 200 }}
        """)
