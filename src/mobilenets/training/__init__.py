"""Training: options (``config``), optimizers and schedules (``optim``), the step (``step``), the run
folder and its checkpoints (``checkpoint``), the loop (``loop``), torchrun/DDP (``distributed``),
evaluation (``evaluate``), fine-tuning (``finetune``), plots and step throughput."""

from .checkpoint import Run, TrainState
from .config import ResolvedConfig, TrainConfig, load_config_file
from .evaluate import evaluate
from .loop import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult, format_history, train
from .step import TrainStep, build_train_step
from .tasks import run_eval
from .throughput import train_throughput

__all__ = ["ResolvedConfig", "Run", "TrainConfig", "TrainResult", "TrainState", "TrainStep", "Trainer",
           "TrainingDiverged", "TrainingInterrupted", "build_train_step", "evaluate", "format_history",
           "load_config_file", "run_eval", "train", "train_throughput"]
