"""Point sets, the pairwise distance engine and the metric families."""
