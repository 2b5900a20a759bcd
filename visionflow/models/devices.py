"""Where training runs: the ``tf.distribute`` strategy, the dtype policy and XLA, from the devices it sees.

- One device (a CPU, or one GPU): TensorFlow's default strategy.
- Several GPUs: ``MirroredStrategy``, a replica per GPU, gradients summed every step.
- ``TF_CONFIG`` set: ``MultiWorkerMirroredStrategy``; every worker runs the same training,
  the steps stay in sync across the workers' GPUs (or CPUs). Keras 3.15's ``fit`` still
  fails under it with two workers or more (keras-team/keras#20585).

:func:`plan_compute` decides from the number of visible GPUs and ``TF_CONFIG`` alone, so it
is tested without either; :func:`make_strategy` builds what it decided.

``train.<family>.batch_size`` is per replica: a step reads one global batch of
``batch_size x replicas`` examples (:func:`global_batch_size`), split among the replicas,
and an epoch has as many fewer steps. The learning rates are not scaled with it.

With a GPU, by default, layers compute in float16 (``mixed_float16``: variables stay
float32 and the loss is scaled, Keras's ``LossScaleOptimizer``); every family's output
layers are float32, so losses, metrics and decoding see float32. On CPUs the policy
stays float32, and nothing changes.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from visionflow.config import PARAMS_FILE, ComputeConfig, ConfigError

StrategyKind = Literal["default", "mirrored", "multi_worker"]
# Keras 3 XLA-compiles no step under tf.distribute; forced, the step fails reading another replica's variables.
XLA_UNDER_DISTRIBUTE = "https://github.com/keras-team/keras/issues/19005"


@dataclass(frozen=True)
class ComputePlan:
    strategy: StrategyKind
    mixed_precision: bool
    # None: as each family compiles it (Keras's "auto": XLA with one GPU and no tf.distribute; the detector opts out)
    jit_compile: bool | None

    @property
    def dtype_policy(self) -> str:
        return "mixed_float16" if self.mixed_precision else "float32"


def plan_compute(config: ComputeConfig, gpus: int, tf_config: str | None) -> ComputePlan:
    """What to train with, seeing ``gpus`` GPUs and the ``TF_CONFIG`` environment variable (None or "": unset)."""
    if tf_config:
        check_tf_config(tf_config)
        strategy = "multi_worker"
    else:
        strategy = "mirrored" if gpus > 1 else "default"
    if config.xla == "on" and strategy != "default":
        raise ConfigError(f"{PARAMS_FILE}: compute.xla: on needs a single replica; under tf.distribute ({strategy}) "
                          f"Keras cannot XLA-compile the step ({XLA_UNDER_DISTRIBUTE}); use auto or off")
    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and gpus > 0)
    return ComputePlan(strategy, mixed, {"on": True, "off": False}.get(config.xla))


def check_tf_config(tf_config: str) -> None:
    """``TF_CONFIG`` must name a ``cluster`` and this process's ``task`` in it, as the strategy reads them."""
    try:
        spec = json.loads(tf_config)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG: not JSON ({e})") from None
    task = spec.get("task") if isinstance(spec, dict) else None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError('TF_CONFIG: needs "cluster" (job -> ["host:port", ...]) and "task" ({"type", "index"})')
    hosts = cluster.get(task.get("type"))
    if not isinstance(hosts, list) or not isinstance(task.get("index"), int) or not 0 <= task["index"] < len(hosts):
        raise ConfigError(f"TF_CONFIG: task {task} is not in the cluster ({', '.join(cluster)})")


def current_plan(config: ComputeConfig) -> ComputePlan:
    """The plan for this process: the GPUs TensorFlow sees (``CUDA_VISIBLE_DEVICES`` applies) and ``TF_CONFIG``."""
    import tensorflow as tf

    return plan_compute(config, len(tf.config.list_physical_devices("GPU")), os.environ.get("TF_CONFIG"))


def make_strategy(plan: ComputePlan):
    """The ``tf.distribute`` strategy of ``plan``.

    Build it before TensorFlow runs anything: MultiWorkerMirroredStrategy configures the
    collective ops of the process, which fails once the runtime has started.
    """
    import tensorflow as tf

    if plan.strategy == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if plan.strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def global_batch_size(per_replica: int, strategy) -> int:
    """A step's batch: ``per_replica`` examples for each replica in sync (across every worker)."""
    return per_replica * strategy.num_replicas_in_sync


def shard_by_data(dataset, strategy):
    """Split each global batch among the workers, whatever the number of shard files.

    Auto-sharding by file would give each worker whole TFRecord shards, and fails with
    more workers than shards; by data every worker reads the same seeded stream and
    keeps its part of every batch, so the global batches are those of one worker. Only
    multi-worker training shards; other datasets are returned as they are.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextmanager
def dtype_policy(name: str):
    """Keras's global dtype policy set to ``name`` for what is built inside, then restored."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


@contextmanager
def deterministic_ops(enabled: bool):
    """TensorFlow's op determinism for the block (restored after): the same inputs give the same weights.

    On CPU its cost is small (the multi-threaded reductions keep their threads; what changes
    is the order in which some gradients are summed). Random ops need seeds, which
    ``keras.utils.set_random_seed`` and the pipeline's stateless augmentation give.
    """
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    if enabled and not before:
        tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if enabled and not before:
            tf_config.disable_op_determinism()
