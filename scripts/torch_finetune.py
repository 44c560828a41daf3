#!/usr/bin/python3
"""The fine-tuning job the service runs, written as the PyTorch script it replaces (the bench's peer).

Same work as a `fine_tuning` job with `weights: random` (or --weights), no augmentation, BatchNorm frozen (unless
--train-batch-norm): torchvision's resnet50 with the service's head, Adam (1e-3 unless --learning-rate), batch 16, a stratified 20% validation split evaluated after
every epoch, the service's evaluation transform, and a checkpoint (model and optimiser) after every epoch,
as the service keeps one. Prints one JSON object: seconds per epoch of training and validation (every
epoch, so the caller can skip the first; checkpoints are not timed, as in the service's metrics), the
seconds of the whole job after the imports (data set, model, epochs, checkpoints), final validation
accuracy, peak RSS and with --test the final model's accuracy on another folder of the same classes (not
timed). --save writes the trained model's state_dict with torch.save (start weights for another job).
"""
import argparse
import json
import random
import os
import tempfile
import time

import torch
import torch.nn as nn
import torchvision
from torchvision import transforms


def peak_rss_mib():
    """This process's own peak RSS (VmHWM): getrusage's ru_maxrss carries the spawning process's peak across exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def head(num_classes):
    return nn.Sequential(
        nn.Linear(2048, 512), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, num_classes),
    )


def stratified_split(samples, fraction, seed):
    by_class = {}
    for index, (_, label) in enumerate(samples):
        by_class.setdefault(label, []).append(index)
    rng = random.Random(seed)
    train, validation = [], []
    for indices in by_class.values():
        rng.shuffle(indices)
        cut = round(len(indices) * fraction)
        validation += indices[:cut]
        train += indices[cut:]
    return train, validation


def listed_split(samples, root, listing):
    """The split another engine made: the images named in `listing` held out, the rest trained on."""
    with open(listing) as lines:
        held = {line.strip() for line in lines if line.strip()}
    train, validation = [], []
    for index, (path, _) in enumerate(samples):
        (validation if os.path.relpath(path, root).replace(os.sep, "/") in held else train).append(index)
    if len(validation) != len(held):
        raise SystemExit(f"--validation names {len(held)} images, {len(validation)} found under {root}")
    return train, validation


def top1(model, loader, memory_format):
    """The share of the loader's images whose top class is their label, in eval mode."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x.to(memory_format=memory_format)).argmax(1) == y).sum().item()
            total += len(y)
    return correct / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="a folder with one sub-folder of images per class")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layout", choices=["nchw", "channels_last"], default="channels_last")
    parser.add_argument("--trainable-from", choices=["conv1", "layer1", "layer2", "layer3", "layer4"], default="conv1")
    parser.add_argument("--seed", type=int, default=0, help="the initialisation, the shuffles and dropout (the split stays seed 0)")
    parser.add_argument("--validation", help="a file naming the held-out images (class/file, one a line) instead of the seed-0 split")
    parser.add_argument("--weights", help="start weights: a torch.save state_dict of torchvision's resnet50 (its head is not used)")
    parser.add_argument("--train-batch-norm", action="store_true", help="BatchNorm learns and updates its statistics")
    parser.add_argument("--save", help="write the trained model's state_dict here with torch.save")
    parser.add_argument("--test", help="a folder of the same classes the final model is scored on after the job (not timed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    job_started = time.perf_counter()

    transform = transforms.Compose([
        transforms.Resize(round(args.size * 256 / 224)),
        transforms.CenterCrop(args.size),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    dataset = torchvision.datasets.ImageFolder(args.data, transform=transform)
    if args.validation:
        train_indices, validation_indices = listed_split(dataset.samples, args.data, args.validation)
    else:
        train_indices, validation_indices = stratified_split(dataset.samples, 0.2, 0)
    train = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, train_indices), batch_size=args.batch, shuffle=True)
    validation = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, validation_indices), batch_size=args.batch)

    model = torchvision.models.resnet50()
    if args.weights:
        backbone = {name: t for name, t in torch.load(args.weights, weights_only=True).items() if not name.startswith("fc.")}
        missing, unexpected = model.load_state_dict(backbone, strict=False)
        if unexpected or any(not name.startswith("fc.") for name in missing):
            raise SystemExit(f"--weights: not torchvision's resnet50 (missing {missing}, unexpected {unexpected})")
    model.fc = head(len(dataset.classes))
    memory_format = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    batch_norms = [] if args.train_batch_norm else [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in batch_norms:
        for p in bn.parameters():
            p.requires_grad = False
    # Stages before --trainable-from frozen, as the seed's notebook freezes them: still run forward every step.
    stages = ["conv1", "layer1", "layer2", "layer3", "layer4"]
    frozen = stages[:stages.index(args.trainable_from)]
    for name, p in model.named_parameters():
        if name.split(".")[0] in frozen or (name.startswith("bn1.") and frozen):
            p.requires_grad = False
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.learning_rate)
    loss_fn = nn.CrossEntropyLoss()

    seconds, accuracies, losses, accuracy = [], [], [], None
    checkpoints = tempfile.mkdtemp(prefix="torch-finetune-")
    for epoch in range(args.epochs):
        started = time.perf_counter()
        model.train()
        for bn in batch_norms:
            bn.eval()
        loss_sum = 0.0
        for x, y in train:
            optimizer.zero_grad()
            loss = loss_fn(model(x.to(memory_format=memory_format)), y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
        accuracy = top1(model, validation, memory_format)
        accuracies.append(accuracy)
        losses.append(loss_sum / len(train_indices))
        seconds.append(time.perf_counter() - started)
        path = os.path.join(checkpoints, f"epoch-{epoch + 1}.pt")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
        os.remove(path)
    os.rmdir(checkpoints)
    if args.save:
        torch.save(model.state_dict(), args.save)
    job_seconds = time.perf_counter() - job_started
    test = None
    if args.test:
        test_set = torchvision.datasets.ImageFolder(args.test, transform=transform)
        if test_set.classes != dataset.classes:
            raise SystemExit(f"--test has classes {test_set.classes}, the job {dataset.classes}")
        test_loader = torch.utils.data.DataLoader(test_set, batch_size=args.batch)
        test = {"testImages": len(test_set), "testAccuracy": top1(model, test_loader, memory_format)}

    print(json.dumps({
        "engine": "pytorch",
        "layout": args.layout,
        "trainableFrom": args.trainable_from,
        "inputSize": args.size,
        "trainImages": len(train_indices),
        "validationImages": len(validation_indices),
        "epochSeconds": seconds,
        "jobSeconds": job_seconds,
        "validationAccuracy": accuracy,
        "epochValidationAccuracy": accuracies,
        "epochTrainingLoss": losses,
        "peakRssMiB": peak_rss_mib(),
        **(test or {}),
    }))


if __name__ == "__main__":
    main()
