"""Time our COCO box evaluator against pycocotools (and faster-coco-eval when installed).

One run, one synthetic case: 5,000 images, 80 categories, about 7 ground-truth boxes
and 100 detections per image. Prints each tool's time, the ratio to pycocotools, and
the largest difference of any of the 12 stats from pycocotools'.

    python benchmarks/coco_eval_speed.py [--images 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import time

import numpy as np

from visionflow.metrics.coco import STAT_KEYS, evaluate_coco


def make_case(n_images: int, n_cats: int = 80, gt_per_image: float = 7.0, dt_per_image: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    W, H = 640, 480
    images = [{"id": i + 1, "width": W, "height": H, "file_name": f"{i + 1}.jpg"} for i in range(n_images)]
    cats = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(n_cats)]
    anns, dets = [], []
    for img in range(1, n_images + 1):
        n_gt = rng.poisson(gt_per_image)
        wh = rng.uniform(4, 300, size=(n_gt, 2))
        xy = rng.uniform(0, 1, size=(n_gt, 2)) * ([W, H] - wh).clip(0)
        gcat = rng.integers(1, n_cats + 1, n_gt)
        crowd = rng.random(n_gt) < 0.01
        for (x, y), (w, h), c, cr in zip(xy, wh, gcat, crowd):
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": int(c), "iscrowd": int(cr),
                         "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h * 0.8)})
        n_near = min(dt_per_image // 2, 6 * n_gt)
        pick = rng.integers(0, max(n_gt, 1), n_near)
        near_wh = wh[pick] * rng.uniform(0.8, 1.2, (n_near, 2)) if n_gt else np.zeros((0, 2))
        near_xy = xy[pick] + rng.normal(0, 0.08, (n_near, 2)) * wh[pick] if n_gt else np.zeros((0, 2))
        near_cat = gcat[pick] if n_gt else np.zeros(0, int)
        n_rand = dt_per_image - len(near_cat)
        rand_wh = rng.uniform(4, 300, (n_rand, 2))
        rand_xy = rng.uniform(0, 1, (n_rand, 2)) * ([W, H] - rand_wh).clip(0)
        boxes = np.concatenate([np.concatenate([near_xy, near_wh], 1), np.concatenate([rand_xy, rand_wh], 1)])
        dcat = np.concatenate([near_cat, rng.integers(1, n_cats + 1, n_rand)])
        scores = np.round(rng.random(len(dcat)), 3)
        for b, c, s in zip(boxes.tolist(), dcat.tolist(), scores.tolist()):
            dets.append({"image_id": img, "category_id": int(c), "bbox": b, "score": s})
    return {"images": images, "annotations": anns, "categories": cats}, dets


def run_ours(gt, dets):
    stats = evaluate_coco(gt, dets).stats
    return np.array([stats[k] for k in STAT_KEYS])


def run_pycocotools(gt, dets, module="pycocotools"):
    if module == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats[:12])


def timed(fn, gt, dets):
    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)  # pycocotools mutates its inputs
    start = time.perf_counter()
    stats = fn(gt, dets)
    return time.perf_counter() - start, stats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=5000)
    args = parser.parse_args()
    gt, dets = make_case(args.images)
    print(f"case: {len(gt['images'])} images, {len(gt['categories'])} categories, "
          f"{len(gt['annotations'])} ground-truth boxes, {len(dets)} detections")
    rows = [("pycocotools", lambda g, d: run_pycocotools(g, d)), ("visionflow", run_ours)]
    try:
        import faster_coco_eval  # noqa: F401
        rows.append(("faster-coco-eval", lambda g, d: run_pycocotools(g, d, "faster_coco_eval")))
    except ImportError:
        print("faster-coco-eval is not installed: its column is left out")
    results = {name: timed(fn, gt, dets) for name, fn in rows}
    base_time, base_stats = results["pycocotools"]
    print(f"{'tool':<18}{'seconds':>10}{'speed-up vs pycocotools':>26}{'max |stat diff|':>18}")
    for name, (seconds, stats) in results.items():
        print(f"{name:<18}{seconds:>10.2f}{base_time / seconds:>25.2f}x{np.max(np.abs(stats - base_stats)):>18.2e}")
    print("AP from pycocotools:", round(float(base_stats[0]), 6))


if __name__ == "__main__":
    main()
