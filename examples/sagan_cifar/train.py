"""Train the example network briefly on the 2,000 bundled training images (CPU, well
under a minute) and write weights.pt beside this file:

    python examples/sagan_cifar/train.py

Then ``convattn.open_model("examples/sagan_cifar/card.toml")`` opens it.
"""

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

import convattn
from convattn.files.data import load_split

HERE = Path(__file__).resolve().parent
EPOCHS = 8
BATCH = 64


def main():
    torch.manual_seed(0)
    spec = importlib.util.spec_from_file_location("sagan_net", HERE / "net.py")
    net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(net)
    model = net.build(num_classes=10)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    train = load_split("sample", "train")
    x = (torch.from_numpy(train.images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    y = torch.as_tensor(train.labels).long()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    steps = EPOCHS * ((len(x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            xb = x[idx]
            if torch.rand(()) < 0.5:
                xb = xb.flip(3)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: loss {total / len(x):.3f}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, HERE / "weights.pt")
    print(f"wrote {HERE / 'weights.pt'}")
    model, info = convattn.open_model(HERE / "card.toml")
    test = load_split("sample", "test")
    with torch.no_grad():
        pred = model(info.prepare(test.images)).argmax(1).numpy()
    print(f"accuracy on the bundled test sample: {100 * (pred == test.labels).mean():.1f} %")


if __name__ == "__main__":
    main()
