"""The source tutorial's style of training loop, timed: the baseline our trainer is
compared with.

    python bench/tutorial_loop.py --data ROOT [--epochs 2]

torchvision ImageFolder + DataLoader (2 workers) with PIL transforms (RandomCrop(32, 4),
RandomHorizontalFlip, ToTensor, Normalize), batch 128, fp32, Adam 1e-3, the attention
module's explicit path (the tutorial materialises A), test accuracy after every epoch.
The tutorial's four defects are fixed (they live in the module, which is ours).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD
from convattn.nn.models import ConvAttentionNet


class TutorialNet(ConvAttentionNet):
    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.attention(x, explicit=True)
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean(dim=(2, 3)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/cifar10-jpeg")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    norm = T.Normalize(CIFAR10_MEAN, CIFAR10_STD)
    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                          norm])
    test_tf = T.Compose([T.ToTensor(), norm])
    trainloader = DataLoader(ImageFolder(f"{args.data}/train", train_tf), batch_size=128,
                             shuffle=True, num_workers=args.workers)
    testloader = DataLoader(ImageFolder(f"{args.data}/test", test_tf), batch_size=128,
                            shuffle=False, num_workers=args.workers)
    torch.manual_seed(0)
    model = TutorialNet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        for images, labels in trainloader:
            images, labels = images.to(device), labels.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in testloader:
                pred = model(images.to(device)).argmax(1).cpu()
                correct += (pred == labels).sum().item()
        seconds.append(time.perf_counter() - t0)
        print(f"epoch {epoch + 1}: test {100 * correct / 10000:.2f}%  {seconds[-1]:.1f}s",
              flush=True)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(json.dumps({"device": name, "epoch_seconds": seconds,
                      "mean_epoch_seconds": sum(seconds) / len(seconds)}))


if __name__ == "__main__":
    main()
