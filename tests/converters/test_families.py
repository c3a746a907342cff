"""The encoder families users bring, as tiny random models built here (no hub): parity of the
exported graph against transformers on several shapes, INT8 through the gate, the task read from
the model, sentence-transformers pooling, and a clear refusal for text-generation models."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from tests.converters import tiny
from tritonstack.converters.api import ExportSpec, export
from tritonstack.converters.cli import main
from tritonstack.converters.errors import UnsupportedModel
from tritonstack.converters.sources.hf import hf_source
from tritonstack.converters.spec import Thresholds

LOOSE = Thresholds(min_mean_cosine=0.9, min_recall_at_10=0.5)  # random tiny models, not MiniLM
FAMILIES = ["distilbert", "roberta", "mpnet", "electra", "deberta-v2"]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_exports_with_parity_and_through_the_int8_gate(family, tmp_path) -> None:
    folder = tiny.write_tiny_family(tmp_path / family, family)
    report = export(ExportSpec(str(folder), family.replace("-", "_"), precisions=("int8", "fp32"),
                               repository=tmp_path / "repo", work_dir=tmp_path / "w", evaluation_size=100,
                               thresholds=LOOSE), progress=None)
    assert all(row["ok"] for row in report.parity["table"])  # FP32 ONNX vs transformers, 3 shapes
    assert report.accuracy["passed"]
    inputs = [i["name"] for i in report.models[1].inputs]
    assert ("token_type_ids" in inputs) == (family == "electra")  # the model's own inputs only


@pytest.mark.parametrize("family", ["bert", *FAMILIES])
def test_every_step_keeps_to_a_short_position_table(family, tmp_path) -> None:
    """Issue #32, item 2: held-out texts longer than a model's position table failed the export
    (DistilBERT with 64 positions: "broadcast ... 64 by 66" in the profile step). Parity,
    calibration, the accuracy gate, golden data and the profile now truncate where the runner's
    axis limit does: here 24 tokens, against evaluation texts of up to ~66."""
    folder = tiny.write_tiny_family(tmp_path / family, family, positions=24)
    name = family.replace("-", "_")
    export(ExportSpec(str(folder), name, precisions=("int8", "fp32"), repository=tmp_path / "repo",
                      work_dir=tmp_path / "w", evaluation_size=100, thresholds=LOOSE), progress=None)
    config = (tmp_path / "repo" / name / "config.pbtxt").read_text()
    assert 'string_value: "sequence_length:24"' in config  # the runner's axis limit: the same 24


def test_a_classifier_takes_its_task_and_labels_from_the_model(tmp_path) -> None:
    folder = tiny.write_tiny_family(tmp_path / "distil", "distilbert", classifier=True)
    assert hf_source(folder, None).task == "text-classification"  # from `architectures`
    report = export(ExportSpec(str(folder), "sentiment", repository=tmp_path / "repo",
                               work_dir=tmp_path / "w"), progress=None)
    assert report.models[0].outputs == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [3]}]
    assert json.loads((folder / "config.json").read_text())["id2label"]["2"] == "positive"


def test_sentence_transformers_files_decide_the_pooling(tmp_path) -> None:
    folder = tiny.write_tiny_family(tmp_path / "st", "bert")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    source = hf_source(folder, None)
    assert (source.pooling, source.normalize) == ("cls", False)  # no Normalize module
    report = export(ExportSpec(str(folder), "cls_pooled", repository=tmp_path / "repo",
                               work_dir=tmp_path / "w"), progress=None)
    assert all(row["ok"] for row in report.parity["table"])  # against transformers' [CLS] state
    session = ort.InferenceSession(str(report.models[0].path / "model.onnx"))
    ids = np.array([[101, 2000, 2001, 102]], np.int64)
    out = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                             "token_type_ids": np.zeros_like(ids)})[0]
    assert abs(float(np.linalg.norm(out)) - 1.0) > 1e-3  # not normalized, as the files say


def test_a_text_generation_model_is_refused_in_one_line(tmp_path, capsys) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=100))
    gpt.save_pretrained(tmp_path / "gpt")
    with pytest.raises(UnsupportedModel, match="GPT2LMHeadModel is a text-generation model"):
        hf_source(tmp_path / "gpt", None)
    assert main(["export", str(tmp_path / "gpt"), "--name", "gpt"]) == 2
    err = capsys.readouterr().err.strip()
    assert "vLLM, TGI or Triton's TensorRT-LLM backend" in err and len(err.splitlines()) == 1


def test_a_cross_encoder_is_gated_on_the_order_of_its_scores(tmp_path) -> None:
    """One logit: argmax agreement would be vacuous, so the gate ranks the scores of
    (query, passage) pairs. A random tiny cross-encoder's scores barely vary, so INT8 noise
    reorders them: refused at the default bar, with the figure; accepted only when lowered."""
    from tritonstack.converters.errors import AccuracyBelowThreshold

    folder = tiny.write_tiny_family(tmp_path / "ce", "bert", reranker=True)
    spec = dict(source=str(folder), name="ce", precisions=("int8", "fp32"), work_dir=tmp_path / "w",
                evaluation_size=200)
    with pytest.raises(AccuracyBelowThreshold, match=r"spearman -?0\.\d+ \(needs >= 0.98\)"):
        export(ExportSpec(**spec, repository=tmp_path / "refused"), progress=None)
    assert not (tmp_path / "refused" / "ce").exists()
    report = export(ExportSpec(**spec, repository=tmp_path / "repo",
                               thresholds=Thresholds(min_score_spearman=0.0)), progress=None)
    assert report.accuracy["kind"] == "score"
    assert set(report.accuracy["metrics"]) >= {"spearman", "max_abs_error", "mean_abs_error"}
    assert report.thresholds_lowered == ["min_score_spearman: 0.98 -> 0.0"]
