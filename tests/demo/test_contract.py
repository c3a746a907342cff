"""The demo pipelines' contract (demo.contract) against everything that restates it: the configs
ensembles generates, the client's constants and the load tester's pipeline names. Fast: no
export, no Triton."""

from __future__ import annotations

from google.protobuf import json_format

from tritonstack.demo import contract


def _io(config) -> tuple[list[tuple], list[tuple]]:
    as_dict = json_format.MessageToDict(config, preserving_proto_field_name=True)
    def rows(key):
        return [(t["name"], t["data_type"], tuple(int(d) for d in t["dims"])) for t in as_dict.get(key, [])]
    return rows("input"), rows("output")


def test_the_generated_ensembles_serve_the_contract() -> None:
    from tritonstack.ensembles.pipelines import digit_steps, text_steps

    embed = text_steps(contract.ENCODER, 128)
    classify = digit_steps(contract.CLASSIFIER)
    for pipeline, ensemble in zip(contract.PIPELINES, (embed, classify), strict=True):
        config = ensemble.config()
        assert config.name == pipeline.name
        assert _io(config) == ([(t.name, t.data_type, t.dims) for t in pipeline.inputs],
                               [(t.name, t.data_type, t.dims) for t in pipeline.outputs])
    assert [s.model_name for s in embed.config().ensemble_scheduling.step][-1] == contract.ENCODER
    assert contract.CLASSIFIER in [s.model_name for s in classify.config().ensemble_scheduling.step]


def test_the_client_and_the_load_tester_name_the_same_pipelines() -> None:
    from tritonstack.client import _pipelines
    from tritonstack.loadtest.campaign import PIPELINES as LOADTEST_PIPELINES

    assert (_pipelines.EMBED_MODEL, _pipelines.CLASSIFY_MODEL) == (contract.EMBED, contract.CLASSIFY)
    assert _pipelines.EMBED_DIM == contract.EMBED_DIM
    assert (_pipelines.DIGIT_SHAPE, _pipelines.DIGIT_MAX) == (contract.DIGIT_SHAPE, contract.DIGIT_MAX)
    assert set(LOADTEST_PIPELINES) == {p.name for p in contract.PIPELINES}
