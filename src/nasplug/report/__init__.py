"""What is shown of runs: summaries and report.md, comparison tables and Pareto fronts, plots
and query curves (ranks and Spearman live in :mod:`nasplug.engine.stats`). It reads run
directories through :mod:`nasplug.run`."""
