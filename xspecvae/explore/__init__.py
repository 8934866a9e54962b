"""Reading a trained run: its tables (:mod:`.steps`: posteriors, the PaCMAP map, trajectories,
anomalies, similarity searches, predictive checks, the decoder's components, fits with their
credible bands) and :func:`explore`, which makes all of them, their figures and the run's HTML
report (:mod:`.sections`)."""

from xspecvae.explore.sections import explore
from xspecvae.explore.steps import (
    TRACK,
    anomaly_table,
    calibration_table,
    check_figure,
    components,
    encode_files,
    example_searches,
    find_row,
    map_table,
    mean_activation,
    most_moving,
    posterior_table,
    project,
    reconstruction,
    similar_table,
    trajectory_table,
    worst_row,
)

__all__ = [
    "TRACK",
    "anomaly_table",
    "calibration_table",
    "check_figure",
    "components",
    "encode_files",
    "example_searches",
    "explore",
    "find_row",
    "map_table",
    "mean_activation",
    "most_moving",
    "posterior_table",
    "project",
    "reconstruction",
    "similar_table",
    "trajectory_table",
    "worst_row",
]
