"""Pictures of runs and models (matplotlib, the optional `viz` extra).

`plot_run(run_dir)` draws training/validation curves from metrics.jsonl.
"""

from lxmert.viz.curves import plot_run

__all__ = ["plot_run"]
