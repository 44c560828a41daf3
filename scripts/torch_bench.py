#!/usr/bin/env python3
"""The PyTorch peer of `npm run bench` (Debian's python3-torch, /usr/bin/python3): the same work on the
same machine in the same run. Prints one JSON document: images/s of inference, a feature-extraction
step and a fine-tuning step (BatchNorm frozen, as the service's default) per input size, in NCHW and
channels_last; each the median of seven timed runs after two warm-ups, as the bench times its own.

usage: torch_bench.py --sizes 224,112 --batch 16 --threads 2
"""
import argparse
import json
import time

import torch
import torchvision


def median_seconds(run, repeats=7):
    run()
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def frozen_batch_norm(model):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)


def measure(size, batch, layout):
    x = torch.randn(batch, 3, size, size)
    labels = torch.arange(batch) % 5
    convert = (lambda t: t.to(memory_format=torch.channels_last)) if layout == "channels_last" else (lambda t: t)
    x = convert(x)
    rows = []
    model = convert(torchvision.models.resnet50()).eval()
    with torch.no_grad():
        seconds = median_seconds(lambda: model(x))
    rows.append({"measurement": "inference", "seconds": seconds})
    for measurement in ("feature_extraction_step", "fine_tuning_step"):
        model = convert(torchvision.models.resnet50())
        model.fc = torch.nn.Linear(2048, 5)
        frozen_batch_norm(model)
        if measurement == "feature_extraction_step":
            for name, p in model.named_parameters():
                p.requires_grad_(name.startswith("fc."))
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)

        def step():
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), labels).backward()
            optimizer.step()

        rows.append({"measurement": measurement, "seconds": median_seconds(step)})
    return [{"engine": "pytorch", "layout": layout, "inputSize": size, "batch": batch, **r, "imagesPerSecond": batch / r["seconds"]} for r in rows]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="224,112")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for layout in ("nchw", "channels_last"):
            results.extend(measure(size, args.batch, layout))
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "mkldnn": torch.backends.mkldnn.is_available(), "results": results}))


main()
