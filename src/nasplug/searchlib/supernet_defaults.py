"""The supernet optimisers' default settings (DARTS's), spelled once.

:func:`~nasplug.searchlib.supernet.search_supernet`, its
:class:`~nasplug.searchlib.supernet.SupernetStepper`,
:class:`~nasplug.searchlib.supernet_options.SupernetOptions` and the strategies built on them
take their defaults from here, so that a change of default reaches every one of them.
"""

from __future__ import annotations

__all__ = [
    "A_BETAS",
    "A_LR",
    "A_WEIGHT_DECAY",
    "W_LR",
    "W_LR_MIN",
    "W_MOMENTUM",
    "W_WEIGHT_DECAY",
]

#: SGD of the supernet's weights: learning rate, annealed on a cosine down to ``W_LR_MIN``.
W_LR = 0.025
W_LR_MIN = 0.001
#: SGD of the supernet's weights: momentum and weight decay.
W_MOMENTUM = 0.9
W_WEIGHT_DECAY = 3e-4
#: Adam of the architecture logits: learning rate, betas and weight decay.
A_LR = 3e-4
A_BETAS = (0.5, 0.999)
A_WEIGHT_DECAY = 1e-3
