"""Runs: a search's or a training's typed, checked config (:mod:`~nasplug.run.config`), its
run directory (:mod:`~nasplug.run.rundir`, the only place a file name is spelled), and their
execution and results. It imports the layers below it, never the report, the CLI or the API."""
