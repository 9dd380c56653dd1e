"""Pictures of runs and models (matplotlib, the optional `viz` extra).

`plot_run(run_dir)` draws training/validation curves from metrics.jsonl;
`compute_attention` / `plot_attention` collect and draw the three encoders' attention
maps for one sentence and image (what `lxmert attention` runs).
"""

from lxmert.viz.attention import AttentionMaps, compute_attention, object_labels, plot_attention
from lxmert.viz.curves import plot_run

__all__ = ["plot_run", "AttentionMaps", "compute_attention", "plot_attention", "object_labels"]
