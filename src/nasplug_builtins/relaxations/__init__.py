"""The built-in relaxations: softmax (with beta-DARTS), sparsemax, entmax (1.5 and any alpha),
soft and hard Gumbel, and DrNAS's Dirichlet.

One module per family (:mod:`.softmax`, :mod:`.sparse`, :mod:`.gumbel`, :mod:`.drnas`); what
they share, the schedules and the cap on parameter-free candidates, is in ``_common``. The
classes are re-exported here.

Every relaxation works over the last dimension of its logits, so one call can serve a single
choice (a 1-D tensor) or a batch of choices stacked into rows.

Schedules: the annealed relaxations share one clock (:class:`Scheduled`). ``on_epoch(epoch,
epochs)`` and ``on_step(step, steps)`` set the search progress

    progress = (epoch * steps + step) / (epochs * steps - 1), clipped to [0, 1],

which is 0 at the first step of the search and exactly 1 at its last step, and every scheduled
value (a temperature ``tau``, entmax's ``alpha``, softmax's Beta-Decay weight) is a
:class:`Schedule` read at that progress.
The clock goes into ``state_dict``, so a resumed search continues with the very same values.

Randomness: the Gumbel and Dirichlet relaxations draw their noise from torch's global
generator on the logits' device; the trainer seeds it and saves its state in checkpoints, so a
resumed run draws the same samples.
"""

from ._common import SHAPES, Schedule, Scheduled, Tempered
from .drnas import DrNAS
from .gumbel import Gumbel, GumbelHard
from .softmax import Softmax
from .sparse import Entmax, Entmax15, Sparsemax

__all__ = [
    "SHAPES",
    "DrNAS",
    "Entmax",
    "Entmax15",
    "Gumbel",
    "GumbelHard",
    "Schedule",
    "Scheduled",
    "Softmax",
    "Sparsemax",
    "Tempered",
]
