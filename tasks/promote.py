"""Stage ``promote@<family>``: ``python -m tasks.promote <family>``: register the tested model; the gate moves ``champion``.

Writes ``metrics/<family>/promotion.json``: the version, the decision, its reason and numbers.
"""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.io import write_json
from visionflow.layout import model_metrics
from visionflow.promotion import register_and_decide
from visionflow.tracking.lineage import lineage_tags
from visionflow.tracking.registry import decision_tags
from visionflow.tracking.runs import stage_run


def run(cfg: Config, model: str) -> None:
    stage = f"promote@{model}"
    tags = dvc_tags(stage)
    lineage = lineage_tags(cfg, model, tags)
    with stage_run(stage, cfg.tracking.experiment, {"promote": cfg.promote.model_dump()}, {**tags, **lineage}):
        mlflow.log_artifact("params.yaml")
        result = register_and_decide(cfg, model, lineage)
        mlflow.set_tags({"registered_model": result["registered_model"], "registered_version": result["version"],
                         **decision_tags(result)})
        print(f"{result['registered_model']} version {result['version']}: "
              f"{'promoted to champion' if result['promote'] else 'not promoted'}: {result['reason']}")
        write_json(model_metrics(model, "promotion"), result)


if __name__ == "__main__":
    main(run)
