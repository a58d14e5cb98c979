"""convattn: an attention microscope for convolutional networks.

The names most scripts need are here; DEVELOPERS.md (Layout) maps the subpackages.
"""

from convattn.files.card import CardError, open_model
from convattn.files.checkpoint import CheckpointError, load_checkpoint
from convattn.files.info import CheckpointInfo
from convattn.files.shipped import load_sample, shipped_checkpoint
from convattn.nn.channel_attention import CBAM, SEBlock
from convattn.nn.models import ConvAttentionNet, ResNet9, create_model, list_models
from convattn.nn.self_attention import ConvAttentionModule, attention_row
from convattn.readout.attention import attention_maps, attention_modules, gamma_values, query_row
from convattn.readout.figures import query_points_figure  # imports matplotlib when drawing
from convattn.trust.calibration import (
    cross_fit_temperature,
    expected_calibration_error,
    reliability,
)
from convattn.trust.label_errors import corrected_accuracy, known_label_errors, label_error_lookup
from convattn.trust.ood import out_of_distribution

# The subpackages hold the rest: nn (networks, the attention interface), readout, explain,
# trust, files, jobs (cli: the commands). Not imported here: trust.label_issues (cleanlab
# brings scikit-learn and pandas, seconds that ``import convattn`` should not pay).

__version__ = "0.1.0"

__all__ = [
    "corrected_accuracy",
    "cross_fit_temperature",
    "expected_calibration_error",
    "known_label_errors",
    "label_error_lookup",
    "reliability",
    "CBAM",
    "CardError",
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
    "load_sample",
    "open_model",
    "out_of_distribution",
    "query_points_figure",
    "query_row",
    "shipped_checkpoint",
]
