"""Stage ``ingest``: write the configured source into the raw COCO layout (``data/raw``)."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.coco_layout import write_raw_dataset
from visionflow.data.sources import build_source
from visionflow.layout import RAW_DIR
from visionflow.tracking import stage_run


def run(cfg: Config) -> None:
    source = build_source(cfg.ingest.source, cfg.ingest.source_options())
    with stage_run("ingest", cfg.tracking.experiment, {"ingest": cfg.ingest.model_dump()}, dvc_tags("ingest")):
        report = write_raw_dataset(source, RAW_DIR, on_error=cfg.ingest.on_error)
        print(report.summary())
        mlflow.log_metrics({"num_records": report.num_records, "num_images": report.num_written,
                            **{f"problems_{kind}": n for kind, n in report.counts().items()}})
        mlflow.log_artifact(str(RAW_DIR / "validation.json"))


if __name__ == "__main__":
    main(run)
