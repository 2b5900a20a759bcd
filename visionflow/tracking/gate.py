"""The promotion gate's decision, from evidence alone (no MLflow here).

In order, a challenger must:
1. reach the absolute minimum of its family's headline metric;
2. against a champion, lose no more than the tolerance on any class;
3. against a champion, be better on a paired bootstrap over the same test images:
   the lower confidence bound of challenger − champion above ``min_improvement``.
With no champion, passing (1) is enough: the first good version becomes champion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from visionflow.config import PromoteConfig
from visionflow.metrics.bootstrap import paired_bootstrap


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    numbers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"promote": self.promote, "reason": self.reason, **self.numbers}


def class_regressions(challenger: dict[str, float], champion: dict[str, float], tolerance: float) -> dict[str, float]:
    """Classes whose metric fell by more than ``tolerance``: name -> the fall."""
    falls = {name: champion[name] - challenger.get(name, 0.0) for name in champion}
    return {name: round(fall, 6) for name, fall in falls.items() if fall > tolerance}


def decide(metric: str, value: float, minimum: float, challenger, champion, cfg: PromoteConfig) -> Decision:
    """``challenger``/``champion``: evidence objects (:mod:`visionflow.metrics.evidence`); ``champion`` may be None."""
    numbers = {"metric": metric, "challenger": value, "min_metric": minimum}
    if value < minimum:
        return Decision(False, f"{metric} {value:.4f} is below the minimum {minimum}", numbers)
    if champion is None:
        return Decision(True, f"{metric} {value:.4f} reaches {minimum}, and there is no champion yet", numbers)
    falls = class_regressions(challenger.per_class(), champion.per_class(), cfg.max_class_regression)
    numbers["class_regressions"] = falls
    if falls:
        worst = max(falls, key=falls.get)
        return Decision(False, f"class {worst} fell by {falls[worst]:.4f} against the champion "
                               f"(tolerance {cfg.max_class_regression})", numbers)
    boot = cfg.bootstrap
    test = paired_bootstrap(challenger.score, champion.score, challenger.num_images, boot.samples, boot.confidence,
                            boot.seed)
    numbers["bootstrap"] = test.as_dict()
    if test.lower <= cfg.min_improvement:
        return Decision(False, f"not better than the champion with {boot.confidence:.0%} confidence: {metric} "
                               f"{test.difference:+.4f}, lower bound {test.lower:+.4f} <= {cfg.min_improvement}",
                        numbers)
    return Decision(True, f"better than the champion: {metric} {test.difference:+.4f}, lower bound "
                          f"{test.lower:+.4f} at {boot.confidence:.0%} confidence", numbers)
