"""Stage ``ingest@<dataset>``: ``python -m tasks.ingest <dataset>``: its source into the raw COCO layout."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.coco_layout import write_raw_dataset
from visionflow.data.sources import build_source
from visionflow.layout import raw_dir
from visionflow.tracking import stage_run


def run(cfg: Config, dataset: str) -> None:
    stage, ingest = f"ingest@{dataset}", cfg.dataset(dataset).ingest
    source = build_source(ingest.source, ingest.source_options())
    with stage_run(stage, cfg.tracking.experiment, {"ingest": ingest.model_dump()}, dvc_tags(stage)):
        report = write_raw_dataset(source, raw_dir(dataset), on_error=ingest.on_error)
        print(report.summary())
        mlflow.log_metrics({"num_records": report.num_records, "num_images": report.num_written,
                            **{f"problems_{kind}": n for kind, n in report.counts().items()}})
        mlflow.log_artifact(str(raw_dir(dataset) / "validation.json"))


if __name__ == "__main__":
    main(run)
