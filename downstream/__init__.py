"""Downstream clinical tasks (skull alignment, cranial implant design) trained on samples.

    from downstream import create_task
    task = create_task("implant").train(volumes, voxel_size_mm, seed=0)
    values = task.evaluate(test_dataset, seed=0)       # list[MetricValue]

Importing the package registers both tasks in :data:`TASKS`; the run-level
protocol (train on samples, test on real skulls, with reference rows) is in
:mod:`downstream.protocol`.
"""

from downstream.alignment import AlignmentParams, AlignmentTask
from downstream.base import TASKS, DegenerateTrainingSet, Task, create_task, get_task, register_task
from downstream.defects import DEFECT_KINDS, Defect, DefectParams, cut_defect
from downstream.implant import ImplantParams, ImplantTask

__all__ = ["TASKS", "AlignmentParams", "AlignmentTask", "DEFECT_KINDS", "Defect",
           "DefectParams", "DegenerateTrainingSet", "ImplantParams", "ImplantTask", "Task",
           "create_task", "cut_defect", "get_task", "register_task"]
