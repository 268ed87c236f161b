"""Search, train and compare from Python, on your own arrays.

    python examples/search_from_python.py          # about 2 minutes on 2 CPU cores
    python examples/search_from_python.py --tiny   # seconds: a smoke test

The images here are the Fashion-MNIST sample that ships with nasplug, read as plain NumPy
arrays, standing in for your own data: any ``(x, y)`` pair of arrays or tensors works, as does a
``torch.utils.data.Dataset`` (streamed through a DataLoader when it is large).
"""

from __future__ import annotations

import argparse
import tempfile
from importlib import resources

import numpy as np

import nasplug


def load_arrays(per_class: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]:
    """``per_class`` training and a quarter as many test images per class, as float arrays."""
    with resources.as_file(resources.files("nasplug_builtins.datasets") / "data") as folder:
        d = np.load(folder / "fashion_mnist_small.npz")
        split = {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test")}

    def take(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        keep = np.concatenate([np.flatnonzero(y == c)[:n] for c in range(10)])
        return x[keep, None].astype(np.float32) / 255.0, y[keep].astype(np.int64)

    train = take(split["x_train"], split["y_train"], per_class)
    test = take(split["x_test"], split["y_test"], max(per_class // 4, 2))
    return train, test


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    tiny = p.parse_args().tiny
    train, test = load_arrays(16 if tiny else 200)
    size = {"channels": 4, "layers": 2} if tiny else {"channels": 8, "layers": 3}
    with tempfile.TemporaryDirectory() as runs:
        # A faithful sparse search: the supernet ends at exactly the network it derives.
        found = nasplug.search(
            "cell",
            "sparsemax",
            data=train,
            test=test,
            task="classification",
            space_opts=size,
            augment="off",  # at a budget this short, augmentation costs accuracy
            epochs=1 if tiny else 4,
            batch_size=32,
            device="auto",
            out=f"{runs}/search",
            quiet=True,
        )
        m = found.data.task.metric
        print("genotype:", found.describe())
        print(
            f"validation {m}: continuous supernet {found.metrics[f'val_{m}_continuous']:.4f}, "
            f"derived network inside it {found.metrics[f'val_{m}_discrete']:.4f}"
        )
        trained = found.train(
            epochs=1 if tiny else 5, batch_size=32, augment="off", out=f"{runs}/train", quiet=True
        )
        print(
            f"trained from scratch: test {m} {trained.metric:.4f}, {trained.result['params']} parameters"
        )
        # New raw inputs are normalised as the training data was, then run through the network.
        predicted = trained.predict(test[0][:8]).argmax(1)
        print(
            "first test images predicted as:", predicted.tolist(), "labels:", test[1][:8].tolist()
        )
        print(nasplug.compare([found, trained]))


if __name__ == "__main__":
    main()
