"""Skull datasets: the common grid, the embedded synthskull generator, real-scan import,
caching, export to medical-image files and PNG previews. Part of the bottom layer: it
imports nothing above :mod:`bench.core`."""
