"""The Keras callback that logs each epoch's metrics to the active run."""

from __future__ import annotations

OPTIMIZER_PARAMS = ("name", "learning_rate", "momentum", "clipnorm", "beta_1", "beta_2")


def keras_callback(phase: str):
    """A callback fit for several ``fit`` calls in one run (the two transfer phases).

    Per-epoch metrics use the Keras epoch as step, so a phase started with
    ``initial_epoch`` continues the curve; validation metrics come with them, as
    ``val_<name>``. The optimizer's params are prefixed with the phase (MLflow refuses to
    change a param). A plain Keras callback rather than MLflow's ``MlflowCallback``:
    that one defines a batch hook, which makes Keras wait for every batch.
    """
    import keras
    import mlflow

    class PhaseCallback(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            config = self.model.optimizer.get_config()
            mlflow.log_params({f"{phase}.optimizer.{k}": config[k] for k in OPTIMIZER_PARAMS if k in config})

        def on_epoch_end(self, epoch, logs=None):
            if logs:
                mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch)

    return PhaseCallback()
