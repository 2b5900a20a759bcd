"""Random COCO evaluation cases, and pycocotools' answer for them (the reference)."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np


def random_case(seed: int, n_images: int = 30, n_cats: int = 6, max_gt: int = 8, max_dt: int = 30,
                crowd_p: float = 0.1) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    W, H = 640, 480
    image_ids = rng.choice(np.arange(1, 10 * n_images), size=n_images, replace=False).tolist()
    cat_ids = sorted(rng.choice(np.arange(1, 4 * n_cats), size=n_cats, replace=False).tolist())
    gt_cats = cat_ids[:-1]  # the last category never has ground truth
    images = [{"id": int(i), "width": W, "height": H, "file_name": f"{i}.jpg"} for i in image_ids]
    anns, dets = [], []
    for img in image_ids:
        n_gt = int(rng.integers(0, max_gt + 1)) if rng.random() > 0.15 else 0  # some images have no GT
        boxes = []
        for _ in range(n_gt):
            w, h = rng.uniform(0, 250, 2) if rng.random() > 0.05 else (0.0, float(rng.uniform(0, 50)))
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            if rng.random() < 0.1:  # on the border
                x = 0.0 if rng.random() < 0.5 else W - w
            box = [round(float(v), 2) for v in (x, y, w, h)]
            cat = int(rng.choice(gt_cats))
            anns.append({"id": len(anns) + 1, "image_id": int(img), "category_id": cat, "bbox": box,
                         "area": float(box[2] * box[3] * rng.uniform(0.4, 1.0)),
                         "iscrowd": int(rng.random() < crowd_p)})
            boxes.append((box, cat))
        for _ in range(int(rng.integers(0, max_dt + 1))):
            if boxes and rng.random() < 0.6:  # near a ground-truth box
                (x, y, w, h), cat = boxes[int(rng.integers(len(boxes)))]
                x, y = x + rng.normal(0, 0.1 * w + 1), y + rng.normal(0, 0.1 * h + 1)
                w, h = max(0.0, w * rng.uniform(0.7, 1.3)), max(0.0, h * rng.uniform(0.7, 1.3))
                if rng.random() < 0.1:
                    cat = int(rng.choice(cat_ids))
            else:
                w, h = rng.uniform(0, 250, 2)
                x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
                cat = int(rng.choice(cat_ids))
            score = round(float(rng.random()), 1) if rng.random() < 0.3 else float(rng.random())  # ties
            dets.append({"image_id": int(img), "category_id": cat,
                         "bbox": [round(float(v), 2) for v in (x, y, w, h)], "score": score})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"cat{c}"} for c in cat_ids]}
    return gt, dets


def pycocotools_eval(gt: dict, dets: list) -> tuple[np.ndarray, dict[str, float]]:
    """pycocotools' 12 stats and per-category AP (area all, 100 detections)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if dets:
            coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per_cat = {}
    for k, cat in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        per_cat[coco_gt.cats[cat]["name"]] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
    return np.array(ev.stats), per_cat
