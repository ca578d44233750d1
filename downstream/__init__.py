"""Downstream clinical tasks (skull alignment, skull completion) trained on synthetic skulls."""
