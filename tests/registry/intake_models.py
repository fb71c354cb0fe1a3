"""Small models in the formats users upload (SavedModel, .keras, TorchScript, .pt2), built at
test time, and hostile files (pickles, a zip bomb). TensorFlow and torch are the converter
extras: every builder imports them inside, and the tests skip without them."""

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def zip_folder(folder: Path) -> bytes:
    """The folder as a zip, under its own name (as `zip -r model.zip model/` makes it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix())
    return buffer.getvalue()


def keras_cnn(classes: int = 10, seed: int = 0):
    """A tiny CNN over 8x8 grey images (scikit-learn's digits): conv, pool, dense, softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


def savedmodel_zip(tmp: Path, model=None) -> bytes:
    import tensorflow as tf

    folder = tmp / "saved_model"
    tf.saved_model.save(model or keras_cnn(), str(folder))
    return zip_folder(folder)


def keras_file(tmp: Path, *, with_lambda: bool = False) -> bytes:
    import keras

    model = keras_cnn()
    if with_lambda:  # a Python lambda: its bytecode is what safe mode refuses to load
        inputs = keras.Input((8, 8, 1))
        model = keras.Model(inputs, model(keras.layers.Lambda(lambda t: t * 2.0)(inputs)))
    path = tmp / "model.keras"
    model.save(path)
    return path.read_bytes()


def savedmodel_with_signatures_zip(tmp: Path) -> bytes:
    """A SavedModel with two serving signatures and no default among them to pick."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def double(self, x):
            return {"y": x * 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def halve(self, x):
            return {"y": x * 0.5}

    module = Module()
    folder = tmp / "two_signatures"
    tf.saved_model.save(module, str(folder), signatures={"double": module.double, "halve": module.halve})
    return zip_folder(folder)


def savedmodel_with_unsupported_op_zip(tmp: Path) -> bytes:
    """Igamma (the regularized incomplete gamma function) has no ONNX conversion in tf2onnx."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 0.5)}

    module = Module()
    folder = tmp / "igamma"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.__call__})
    return zip_folder(folder)


def torch_cnn(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10),
    ).eval()


def torchscript_file(tmp: Path, module=None) -> bytes:
    import torch

    traced = torch.jit.trace(module or torch_cnn(), torch.zeros(1, 1, 8, 8))
    path = tmp / "model.pt"
    torch.jit.save(traced, str(path))
    return path.read_bytes()


def torch_export_file(tmp: Path) -> bytes:
    import torch

    program = torch.export.export(
        torch_cnn(), (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},)
    )
    path = tmp / "model.pt2"
    torch.export.save(program, str(path))
    return path.read_bytes()


def pickled_torch_module(tmp: Path) -> bytes:
    """`torch.save` of a whole module: a zip whose data.pkl names Python classes to import."""
    import torch

    path = tmp / "pickled.pt"
    torch.save(torch_cnn(), str(path))
    return path.read_bytes()


def plain_pickle() -> bytes:
    """What joblib.dump or pickle.dump writes; loading it may run any code (here, harmless)."""
    return pickle.dumps({"weights": np.zeros(3)}, protocol=4)


def zip_bomb_pt(unpacked_mb: int = 20) -> bytes:
    """A zip laid out like a TorchScript archive whose one member inflates ~1000-fold."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/constants.pkl", b"\x80\x02).")
        archive.writestr("model/code/__torch__.py", b"")
        archive.writestr("model/data/0", bytes(unpacked_mb * 1024 * 1024))
    return buffer.getvalue()


def savedmodel_zip_without_graph() -> bytes:
    """A SavedModel folder's variables zipped without its saved_model.pb."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/variables/variables.index", b"\x00" * 16)
        archive.writestr("model/fingerprint.pb", b"")
    return buffer.getvalue()
