"""Training, evaluation and safe checkpoints."""
from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from .evaluate import evaluate
from .loop import predict, prepare_data, train

__all__ = ["evaluate", "load_checkpoint", "model_from_checkpoint", "predict", "prepare_data",
           "save_checkpoint", "train"]
