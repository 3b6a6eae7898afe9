"""Tasks: the index-time rule, windows, labels, vital-sign channels and audit attributes of a study
design, read from YAML. Shipped tasks live beside this file and load by short name."""

from medmm.tasks.load import (
    DEFAULT_TASK,
    cohort_task,
    default_vocabulary,
    load_task,
    shipped_tasks,
    task_from_dict,
    task_to_dict,
)
from medmm.tasks.task import (
    Horizon,
    ImagesWindow,
    IndexRule,
    LabelSpec,
    LabelWords,
    NotesWindow,
    Task,
    VitalsWindow,
    Vocabulary,
)

__all__ = [
    "Horizon",
    "ImagesWindow",
    "IndexRule",
    "LabelSpec",
    "LabelWords",
    "NotesWindow",
    "Task",
    "VitalsWindow",
    "Vocabulary",
    "DEFAULT_TASK",
    "cohort_task",
    "default_vocabulary",
    "load_task",
    "shipped_tasks",
    "task_from_dict",
    "task_to_dict",
]
