"""Stage ``photos``: export the photographs ``params.yaml`` lists from scikit-image to ``data/photos``.

``data/photos/train`` feeds the synthetic source's photo backgrounds,
``data/photos/held_out`` the robustness stage's background swap.
"""

from pathlib import Path

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.photos import export_photos
from visionflow.io import atomic_dir
from visionflow.layout import PHOTOS_DIR
from visionflow.tracking import stage_run


def run(cfg: Config) -> None:
    with stage_run("photos", cfg.tracking.experiment, {"photos": cfg.photos.model_dump()}, dvc_tags("photos")):
        for part, names in (("train", cfg.photos.train), ("held_out", cfg.photos.held_out)):
            with atomic_dir(Path(PHOTOS_DIR / part)) as tmp:
                export_photos(list(names), tmp)
            mlflow.log_metric(f"num_{part}", len(names))


if __name__ == "__main__":
    main(run)
