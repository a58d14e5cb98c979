"""convattn: an attention microscope for convolutional networks."""

from .attention import attention_maps, attention_modules, gamma_values, query_row
from .calibration import cross_fit_temperature, expected_calibration_error, reliability
from .checkpoint import CheckpointError, load_checkpoint
from .info import CheckpointInfo
from .label_errors import corrected_accuracy, known_label_errors, label_error_lookup
from .layers import CBAM, ConvAttentionModule, SEBlock, attention_row
from .models import ConvAttentionNet, ResNet9, create_model, list_models
from .ood import out_of_distribution

# Imported where they are used: label_issues (cleanlab brings scikit-learn and pandas,
# seconds that ``import convattn`` should not pay) and neighbours (it reads datasets, and
# ``python -m convattn.data`` must not find convattn.data imported already).

__version__ = "0.1.0"

__all__ = [
    "corrected_accuracy",
    "cross_fit_temperature",
    "expected_calibration_error",
    "known_label_errors",
    "label_error_lookup",
    "reliability",
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
    "out_of_distribution",
    "query_row",
]
