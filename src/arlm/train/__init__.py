"""Training the neural families: batches, schedules, the loop, checkpoints (F10–F16)."""

from arlm.train.batches import (
    TBPTTStreams,
    loss_targets,
    random_chunks,
    validation_chunks,
    validation_streams,
)
from arlm.train.checkpoint import load_checkpoint, read_state, save_checkpoint
from arlm.train.schedules import learning_rate, teacher_forcing_ratio
from arlm.train.trainer import (
    TrainConfig,
    Trainer,
    TrainingError,
    TrainingForward,
    TrainingLoss,
    TrainSummary,
    param_groups,
)

__all__ = [
    "TBPTTStreams",
    "TrainConfig",
    "TrainSummary",
    "Trainer",
    "TrainingError",
    "TrainingForward",
    "TrainingLoss",
    "learning_rate",
    "load_checkpoint",
    "loss_targets",
    "param_groups",
    "random_chunks",
    "read_state",
    "save_checkpoint",
    "teacher_forcing_ratio",
    "validation_chunks",
    "validation_streams",
]
