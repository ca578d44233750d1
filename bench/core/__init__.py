"""The bottom layer: what every part of the benchmark builds on.

Errors, atomic file writes, hyperparameter overrides, the generic registry,
metric values, binary-volume checks, the shared training loop and the
process-group helpers of torchrun, and the claim files that give a cell one
worker. Nothing here imports ``methods``, ``metrics``, ``downstream``, the
representations or the harness (checked by the import-linter contracts in
setup.cfg).
"""
