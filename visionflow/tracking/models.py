"""Logging a saved Keras model: its signature, requirements and model card."""

from __future__ import annotations


def serving_requirements() -> list[str]:
    """What a saved model needs to be served: the Keras and TensorFlow that wrote it.

    Stated, not inferred: MLflow's inference loads the model again in a subprocess, which
    cost about 10 s per logged model here and can only find these two.
    """
    import keras
    import tensorflow as tf

    return [f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"]


def log_keras_model(model, sample_inputs, name: str = "model", registered_model_name: str | None = None,
                    metadata: dict | None = None):
    """Log ``model`` in the Keras flavour with a signature inferred from a real batch (and its model card)."""
    import mlflow.keras
    from mlflow.models import infer_signature

    outputs = model.predict(sample_inputs, verbose=0)
    signature = infer_signature(sample_inputs, {k: v for k, v in outputs.items()})
    return mlflow.keras.log_model(model, name=name, signature=signature, pip_requirements=serving_requirements(),
                                  registered_model_name=registered_model_name, metadata=metadata)
