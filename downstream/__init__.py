"""Downstream clinical tasks (skull alignment, skull completion) trained on synthetic skulls.

    from downstream import create_task
    task = create_task("completion").train(volumes, voxel_size_mm, seed=0)
    values = task.evaluate(test_dataset, seed=0)       # list[MetricValue]

Importing the package registers both tasks in :data:`TASKS`; the run-level
protocol (train on synthetic, test on real, with reference rows) is in
:mod:`downstream.protocol`.
"""

from downstream.base import (TASKS, DegenerateTrainingSet, Task, create_task,
                             get_task, register_task)
from downstream.alignment import AlignmentParams, AlignmentTask
from downstream.completion import CompletionParams, CompletionTask
from downstream.defects import DEFECT_KINDS, Defect, DefectParams, cut_defect

__all__ = ["TASKS", "AlignmentParams", "AlignmentTask", "CompletionParams", "CompletionTask",
           "DEFECT_KINDS", "Defect", "DefectParams", "DegenerateTrainingSet", "Task",
           "create_task", "cut_defect", "get_task", "register_task"]
