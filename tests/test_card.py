"""Model cards (convattn.open_model): the cards are written here, beside their code."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import convattn
from convattn import CardError, open_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sagan_cifar"

NET = '''
import torch
from torch import nn
from helpers import width          # a sibling module
from parts.blocks import Block     # a package beside the card

class Net(nn.Module):
    def __init__(self, channels=3, num_classes=3):
        super().__init__()
        self.body = Block(channels, width())
        self.fc = nn.Linear(width(), num_classes)
    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))

def build(channels=3, num_classes=3):
    return Net(channels, num_classes)

def broken():
    raise RuntimeError("no such layer")

not_a_function = 3
'''

CARD = '''
factory = "net.py:build"
weights = "net.pt"
classes = ["cat", "dog", "fox"]
image_size = 16
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
'''


def _project(tmp: Path, card: str = CARD, channels: int = 3,
             wrap=lambda state: state) -> Path:
    (tmp / "net.py").write_text(NET)
    (tmp / "helpers.py").write_text("def width():\n    return 8\n")
    (tmp / "parts").mkdir(exist_ok=True)
    (tmp / "parts" / "__init__.py").write_text("")
    (tmp / "parts" / "blocks.py").write_text(
        "from torch import nn\n"
        "class Block(nn.Sequential):\n"
        "    def __init__(self, cin, cout):\n"
        "        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout))\n")
    sys.path.insert(0, str(tmp))
    try:
        for name in ("helpers", "parts", "parts.blocks"):
            sys.modules.pop(name, None)
        ns: dict = {}
        exec(compile(NET, str(tmp / "net.py"), "exec"), ns)
        torch.manual_seed(0)
        model = ns["build"](channels)
    finally:
        sys.path.remove(str(tmp))
        for name in ("helpers", "parts", "parts.blocks"):
            sys.modules.pop(name, None)
    torch.save(wrap(model.state_dict()), tmp / "net.pt")
    (tmp / "card.toml").write_text(textwrap.dedent(card))
    return tmp / "card.toml"


@pytest.fixture(autouse=True)
def _forget_siblings():
    yield
    for name in ("helpers", "parts", "parts.blocks"):
        sys.modules.pop(name, None)


def test_a_card_opens_its_model_with_a_checkpoint_info(tmp_path):
    card = _project(tmp_path)
    path_before = list(sys.path)
    model, info = open_model(card)
    assert sys.path == path_before  # the card's folder was importable only while loading
    assert not model.training
    assert isinstance(info, convattn.CheckpointInfo)
    assert info.arch == "card:net.py:build"
    assert info.classes == ["cat", "dog", "fox"] and info.num_classes == 3
    assert info.image_size == (16, 16) and info.input_size == 16
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.25, 0.25, 0.25)
    saved = torch.load(tmp_path / "net.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 30, 3), dtype=np.uint8)
    x = info.prepare(images)
    assert x.shape == (2, 3, 16, 16)
    assert model(x).shape == (2, 3)


@pytest.mark.parametrize("wrap", [
    lambda s: {f"module.{k}": v for k, v in s.items()},  # DataParallel / DDP
    lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}, "epoch": 3},
    lambda s: {"model": s},
])
def test_wrapped_and_prefixed_weights_load(tmp_path, wrap):
    model, _ = open_model(_project(tmp_path, wrap=wrap))
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 3)


def test_a_grey_card_takes_rgb_images_made_grey(tmp_path):
    card = CARD.replace("[0.5, 0.5, 0.5]", "[0.5]").replace("[0.25, 0.25, 0.25]", "[0.25]")
    card += 'kwargs = { channels = 1 }\n'
    model, info = open_model(_project(tmp_path, card, channels=1))
    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    from PIL import Image
    grey = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    x = info.prepare(rgb)
    assert x.shape == (1, 1, 16, 16)
    assert torch.allclose(x[0, 0], (torch.from_numpy(grey) / 255 - 0.5) / 0.25)
    assert model(x).shape == (1, 3)


def test_classes_from_a_file_and_a_rectangular_size(tmp_path):
    card = CARD.replace('["cat", "dog", "fox"]', '"names.txt"').replace(
        "image_size = 16", "image_size = [12, 20]")
    (tmp_path / "names.txt").write_text("cat\ndog\n\nfox\n")
    _, info = open_model(_project(tmp_path, card))
    assert info.classes == ["cat", "dog", "fox"]
    assert info.image_size == (12, 20) and info.input_size == (12, 20)
    images = np.zeros((1, 30, 30, 3), dtype=np.uint8)
    assert info.prepare(images).shape == (1, 3, 12, 20)


def _bad(tmp_path, card=CARD, **kw) -> str:
    with pytest.raises(CardError) as e:
        open_model(_project(tmp_path, card, **kw))
    message = str(e.value)
    assert message.startswith(str(tmp_path)) and message.endswith(".")
    assert "\n" not in message
    return message


def test_a_card_that_is_not_there_or_not_toml(tmp_path):
    with pytest.raises(CardError, match="does not exist"):
        open_model(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("factory = \n")
    with pytest.raises(CardError, match="is not a TOML model card"):
        open_model(tmp_path / "bad.toml")


BAD = [
    (CARD.replace('weights = "net.pt"\n', ""), "the key 'weights' is missing"),
    (CARD + "classes_file = 'x'\n", "unknown key 'classes_file'"),
    (CARD.replace('"net.py:build"', "3"), "factory must be a string, not a number"),
    (CARD.replace('"net.py:build"', '"net.py"'), "factory must be 'file.py:callable'"),
    (CARD.replace('"net.py:build"', '"nets.py:build"'), "the factory file"),
    (CARD.replace('"net.py:build"', '"net.py:make"'), "names 'make', which net.py does"),
    (CARD.replace('"net.py:build"', '"net.py:not_a_function"'), "is not callable"),
    (CARD.replace('"net.py:build"', '"net.py:broken"'),
     "raised RuntimeError: no such layer"),
    (CARD.replace('"net.py:build"', '"no_such_module_xyz:build"'),
     "importing the factory module 'no_such_module_xyz' raised ModuleNotFoundError"),
    (CARD.replace('"net.pt"', '"other.pt"'), "the weights file"),
    (CARD.replace('["cat", "dog", "fox"]', '["cat", "dog"]'),
     "the model gives 3 outputs but classes names 2"),
    (CARD.replace('["cat", "dog", "fox"]', "3"), "classes must be a list of names"),
    (CARD.replace('["cat", "dog", "fox"]', '"names.txt"'), "the classes file"),
    (CARD.replace("image_size = 16", "image_size = [16]"), "image_size must be"),
    (CARD.replace("[0.5, 0.5, 0.5]", "[0.5, 0.5]"), "mean must be a list of 1 (grey) or 3"),
    (CARD.replace("[0.25, 0.25, 0.25]", "[0.25]"), "std has 1 values but mean has 3"),
    (CARD.replace("[0.25, 0.25, 0.25]", "[0.25, 0, 0.25]"), "std must be positive"),
    (CARD + "kwargs = 3\n", "kwargs must be a table"),
    (CARD + "kwargs = { depth = 2 }\n", "raised TypeError"),
]


@pytest.mark.parametrize("card, says", BAD)
def test_a_bad_card_is_one_sentence_naming_what_is_wrong(tmp_path, card, says):
    assert says in _bad(tmp_path, card)


def test_weights_that_do_not_fit_name_a_few_keys(tmp_path):
    def rename(state):
        return {k: v for k, v in state.items() if not k.startswith("fc.")} | {
            "extra.w": state["fc.weight"]}

    message = _bad(tmp_path, wrap=rename)
    assert "do not fit the factory's model: missing fc.weight, fc.bias; unexpected extra.w" \
        in message
    message = _bad(tmp_path, wrap=lambda s: s | {"fc.bias": torch.zeros(5)})
    assert "of another shape fc.bias" in message
    message = _bad(tmp_path, wrap=lambda s: {"epochs": 3})
    assert "holds no state dict" in message
    (tmp_path / "net.pt").write_bytes(b"not a torch file")
    with pytest.raises(CardError, match="could not be loaded weights-only"):
        open_model(tmp_path / "card.toml")


def test_a_model_that_fails_on_the_card_input_is_named(tmp_path):
    card = CARD.replace("[0.5, 0.5, 0.5]", "[0.5]").replace("[0.25, 0.25, 0.25]", "[0.25]")
    assert "the model failed on an input of shape (1, 1, 16, 16)" in _bad(tmp_path, card)


def test_two_cards_with_a_net_py_each_do_not_mix(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    model_a, _ = open_model(_project(a))
    model_b, _ = open_model(_project(b))
    assert type(model_a).__module__ != type(model_b).__module__


@pytest.mark.skipif(not (EXAMPLE / "weights.pt").exists(),
                    reason="examples/sagan_cifar/weights.pt not trained (run its train.py)")
def test_the_sagan_example_beats_chance_on_the_bundled_test_sample():
    model, info = open_model(EXAMPLE / "card.toml")
    assert isinstance(model, nn.Module) and info.classes[0] == "airplane"
    test = convattn.load_sample()
    with torch.no_grad():
        pred = model(info.prepare(test.images)).argmax(1).numpy()
    assert (pred == test.labels).mean() > 0.2  # chance is 10 %
