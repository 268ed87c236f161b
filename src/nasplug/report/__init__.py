"""What is shown of runs: summaries and report.md, comparison tables and Pareto fronts,
statistics, plots and query curves. It reads run directories through :mod:`nasplug.run`."""
