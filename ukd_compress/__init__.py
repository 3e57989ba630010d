"""ukd-compress: Universal-KD distillation of fine-tuned teachers into small students."""

__version__ = "0.1.0"
