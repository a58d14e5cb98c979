"""Device choice shared by the CLIs: a wrong --device is one sentence, not a traceback."""

import pytest
import torch

from convattn.cli.evaluate import main as evaluate_main
from convattn.device import pick_device
from convattn.errors import DataError


def test_cpu_and_auto():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected


def test_unknown_device_is_refused():
    with pytest.raises(DataError, match="unknown device 'gpu'"):
        pick_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_sentence_in_the_cli(tmp_path, capsys):
    with pytest.raises(DataError, match="no CUDA GPU"):
        pick_device("cuda")
    # The check comes before the checkpoint is read, so any path shows it.
    assert evaluate_main([str(tmp_path / "x.pt"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --device cuda was asked for, but no CUDA GPU is available."]
