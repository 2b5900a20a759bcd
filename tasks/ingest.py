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
        stats = write_raw_dataset(source, RAW_DIR)
        mlflow.log_metrics(stats)


if __name__ == "__main__":
    main(run)
