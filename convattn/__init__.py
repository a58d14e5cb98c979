"""convattn: an attention microscope for convolutional networks."""

from .attention import attention_maps, attention_modules, gamma_values, query_row
from .checkpoint import CheckpointError, load_checkpoint
from .info import CheckpointInfo
from .layers import CBAM, ConvAttentionModule, SEBlock, attention_row
from .models import ConvAttentionNet, ResNet9, create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "CBAM",
    "CheckpointError",
    "CheckpointInfo",
    "ConvAttentionModule",
    "ConvAttentionNet",
    "ResNet9",
    "SEBlock",
    "attention_maps",
    "attention_modules",
    "attention_row",
    "create_model",
    "gamma_values",
    "list_models",
    "load_checkpoint",
    "query_row",
]
