"""The Keras callback that logs each epoch's metrics to the active run."""

from __future__ import annotations


def keras_callback(phase: str):
    """MLflow's Keras callback, made fit for several ``fit`` calls in one run.

    Per-epoch metrics use the Keras epoch as step, so a phase started with
    ``initial_epoch`` continues the curve. The optimizer's params are prefixed with the
    phase (MLflow refuses to change a param), and the stock ``on_test_end`` logging,
    which repeats step 0, is dropped: validation metrics already come per epoch.
    """
    import mlflow.keras

    class PhaseCallback(mlflow.keras.MlflowCallback):
        def on_train_begin(self, logs=None):
            config = self.model.optimizer.get_config()
            keep = ("name", "learning_rate", "momentum", "clipnorm", "beta_1", "beta_2")
            mlflow.log_params({f"{phase}.optimizer.{k}": config[k] for k in keep if k in config})

        def on_epoch_end(self, epoch, logs=None):
            if logs:
                mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch)

        def on_test_end(self, logs=None):
            pass

    return PhaseCallback()
