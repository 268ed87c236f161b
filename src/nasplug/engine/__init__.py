"""The training engine: the trainer, data (streaming, user data, augmentation), tasks and
metrics, devices, DDP, compiling and random state. It imports only :mod:`nasplug.core`."""
