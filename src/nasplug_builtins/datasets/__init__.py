"""Built-in datasets: an embedded offline default, torchvision sets, ``.npz`` arrays, image folders.

Every plugin's ``load()`` returns :class:`nasplug.core.types.Data` whose inputs are float32 tensors
normalised with the mean and standard deviation of the train split only (per channel for images
``[N, C, H, W]``, per feature for vectors ``[N, D]``). Bad data raises a one-line ``ValueError``
that names the problem and what is accepted, before any tensor reaches the trainer.

One module per family: :mod:`.embedded` (the shipped Fashion-MNIST subset and its multi-label
pairs, the file in ``data/``), :mod:`.torchvision_sets` (MNIST, Fashion-MNIST, CIFAR-10),
:mod:`.files` (``.npz`` arrays, image folders) and :mod:`.diabetes`; their shared checks are in
``_common``. The classes are re-exported here.

Example:
    >>> data = FashionMnistSmall(train_per_class=10, test_per_class=5).load()
    >>> data.task.input_shape, len(data.train[0]), len(data.test[0])
    ((1, 28, 28), 100, 50)
"""

from .diabetes import Diabetes
from .embedded import FashionMnistMultilabel, FashionMnistSmall
from .files import ImageFolder, Npz
from .torchvision_sets import Cifar10, FashionMnist, Mnist, read_idx

__all__ = [
    "Cifar10",
    "Diabetes",
    "FashionMnist",
    "FashionMnistMultilabel",
    "FashionMnistSmall",
    "ImageFolder",
    "Mnist",
    "Npz",
    "read_idx",
]
