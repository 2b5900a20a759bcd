"""The classifier's Keras model: backbone (BatchNorm in inference mode), global pooling, softmax."""

from __future__ import annotations

import keras

from visionflow.models.backbones import BackboneSpec


def build_classifier(spec: BackboneSpec, image_size: int, num_classes: int, width: float = 1.0,
                     backbone_weights: str | None = None, pooling: str = "avg"):
    """Returns ``(model, backbone)``; one output, ``class``, the softmax over the classes."""
    backbone = spec.build(image_size, weights=None, width=width)
    if backbone_weights:
        backbone.load_weights(backbone_weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    if pooling == "max16":  # a small object is a cell or two of the 1/16 map, and a fraction of one at 1/32
        trunk, top = spec.split(backbone)
        fine = trunk(inputs, training=False)
        coarse = top(fine, training=False)
        pooled = keras.layers.Concatenate(name="class_pool")([
            keras.layers.GlobalMaxPooling2D(name="class_pool16")(fine),
            keras.layers.GlobalMaxPooling2D(name="class_pool32")(coarse)])
    else:
        features = backbone(inputs, training=False)
        pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
        pooled = pool(name="class_pool")(features)
    probs = keras.layers.Dense(num_classes, activation="softmax", name="class", dtype="float32")(pooled)  # any policy
    return keras.Model(inputs, {"class": probs}, name="classifier"), backbone


def compile_classifier(model, optimizer, top_k: int) -> None:
    """Recompile after every change of ``trainable``: it only takes effect on compile."""
    metrics = ["accuracy"]
    if top_k > 1:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=top_k, name=f"top_{top_k}_accuracy"))
    model.compile(optimizer=optimizer, loss={"class": "sparse_categorical_crossentropy"},
                  metrics={"class": metrics})
