#!/usr/bin/env python3
"""PyTorch side of the parity tests, run with Debian's python3-torch (/usr/bin/python3).

make:  seeded torchvision resnet50 with non-default BatchNorm statistics -> weights.safetensors (and,
       with --pth, the same state_dict as torch.save writes it: weights.pth, zip format), plus, per
       input size, a fixed input (NCHW float32) and the model's eval-mode logits.
pth:   torch.save files for the .pth reader's tests: a state_dict with module. prefixes (as
       DataParallel saves one), a non-contiguous and an offset tensor, and a pickle naming os.system.
predict: torchvision's evaluation transform + softmax top-5 of one image, for the predict endpoint
       (weights from safetensors, or from a torch.save .pth as torchvision's own files are).
conv:  the forward output and both gradients of convolutions (TensorFlow's NHWC/HWIO layouts and
       'same' padding, asymmetric where TensorFlow pads so) for the native kernels' tests.
pixels: torchvision's evaluation transform (Resize, CenterCrop) or RandomResizedCrop's crop-resize at a given box
       and a flip, on PIL images, as 8-bit RGB bytes (the input of ToTensor) for the data pipeline's tests.
step:  one SGD step (learning rate 1) of the fine-tuning network trained from --trainable-from, BatchNorm frozen,
       dropout off, from a stand-in's backbone and a seeded head: the weights before and after, the batch, the loss.
check: loads safetensors exported by the service into torchvision's resnet50 with strict=True
       (with the fine-tuning head when --head fine_tuning) and writes its logits for an input.
Tensors go through raw little-endian float32 files; safetensors is written and read by hand because
Debian has no python3-safetensors.
"""
import argparse
import json
import struct
import sys

import torch
import torchvision

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
NUMPY_TYPES = {"F32": torch.float32, "F16": torch.float16, "I64": torch.int64}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.contiguous().cpu().numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - (8 + len(raw)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        buf = bytearray(data[8 + n + begin : 8 + n + end])
        out[name] = torch.frombuffer(buf, dtype=NUMPY_TYPES[entry["dtype"]]).reshape(entry["shape"]).clone()
    return out


def resnet50(head, num_classes):
    model = torchvision.models.resnet50()
    if head == "fine_tuning":
        model.fc = torch.nn.Sequential(
            torch.nn.Linear(2048, 512), torch.nn.ReLU(), torch.nn.Dropout(0.25),
            torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Dropout(0.5),
            torch.nn.Linear(256, num_classes),
        )
    elif num_classes != 1000:
        model.fc = torch.nn.Linear(2048, num_classes)
    return model


def make(args):
    torch.manual_seed(args.seed)
    model = resnet50("linear", 1000)
    # Statistics measured on data (cumulative averages), so activations stay well scaled in eval mode,
    # then affine parameters and statistics moved off their defaults.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64))
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                # A trained ResNet keeps its residual branches small (bn3 scales well below 1), which
                # keeps the 2048-D features O(1) as they are for real ImageNet weights.
                m.weight.uniform_(0.1, 0.3) if name.endswith("bn3") else m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.add_(torch.randn_like(m.running_mean) * 0.05)
                m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25))
    model.eval()
    state = {k: v for k, v in model.state_dict().items()}
    dtype = torch.float16 if args.float16 else torch.float32
    write_safetensors(args.out + "/weights.safetensors",
                      {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()})
    if args.pth:
        torch.save(model.state_dict(), args.out + "/weights.pth")
    if args.float16:
        model.load_state_dict({k: (v.half().float() if v.is_floating_point() else v) for k, v in state.items()})
    for size in args.sizes:
        x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 4 - 2
        with torch.no_grad():
            logits = model(x)
        x.numpy().astype("<f4").tofile(f"{args.out}/input-{size}.f32")
        logits.numpy().astype("<f4").tofile(f"{args.out}/logits-{size}.f32")


class RunsACommand:
    """What a hostile checkpoint holds: unpickling it would call os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def pth(args):
    torch.manual_seed(args.seed)
    model = resnet50("linear", 1000)
    state = model.state_dict()
    torch.save({f"module.{k}": v for k, v in state.items()}, args.out + "/module-prefixed.pth")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    torch.save({"transposed": base.t(), "offset": base.reshape(-1)[5:11], "half": base.half(), "count": torch.tensor(7)},
               args.out + "/views.pth")
    torch.save({"weight": torch.zeros(2), "payload": RunsACommand(args.marker)}, args.out + "/hostile.pth")


def read_f32(path, shape):
    return torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.float32).reshape(shape)


def conv(args):
    """Per case in cases.json: y = conv(x, filter), dx and dfilter of sum(weights * y), as TensorFlow lays them out."""
    with open(f"{args.dir}/cases.json") as f:
        cases = json.load(f)
    for i, c in enumerate(cases):
        n, h, w, channels = c["input"]
        k, s = c["kernel"], c["stride"]
        x = read_f32(f"{args.dir}/x-{i}.f32", c["input"]).permute(0, 3, 1, 2).contiguous().requires_grad_()
        kernel = read_f32(f"{args.dir}/filter-{i}.f32", [k, k, channels, c["filters"]]).permute(3, 2, 0, 1).contiguous().requires_grad_()
        padded = x
        if c["padding"] == "same":
            pads = [max((-(-size // s) - 1) * s + k - size, 0) for size in (h, w)]
            padded = torch.nn.functional.pad(x, [pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2])
        y = torch.nn.functional.conv2d(padded, kernel, stride=s)
        weights = read_f32(f"{args.dir}/weights-{i}.f32", [n, y.shape[2], y.shape[3], c["filters"]]).permute(0, 3, 1, 2)
        (y * weights).sum().backward()
        y.detach().permute(0, 2, 3, 1).numpy().astype("<f4").tofile(f"{args.dir}/y-{i}.f32")
        x.grad.permute(0, 2, 3, 1).numpy().astype("<f4").tofile(f"{args.dir}/dx-{i}.f32")
        kernel.grad.permute(2, 3, 1, 0).numpy().astype("<f4").tofile(f"{args.dir}/dfilter-{i}.f32")


def check(args):
    model = resnet50(args.head, args.num_classes)
    model.load_state_dict(read_safetensors(args.weights), strict=True)
    model.eval()
    x = torch.frombuffer(bytearray(open(args.input, "rb").read()), dtype=torch.float32)
    x = x.reshape(-1, 3, args.size, args.size)
    with torch.no_grad():
        model(x).numpy().astype("<f4").tofile(args.logits_out)


def predict(args):
    """torchvision's evaluation transform and the softmax top-5 for one image file."""
    from PIL import Image
    from torchvision import transforms

    model = resnet50("linear", 1000)
    weights = torch.load(args.weights) if args.weights.endswith(".pth") else read_safetensors(args.weights)
    model.load_state_dict(weights, strict=True)
    model.eval()
    transform = transforms.Compose([
        transforms.Resize(round(args.size * args.resize_at_224 / 224)),
        transforms.CenterCrop(args.size),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    x = transform(Image.open(args.image).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        probabilities = torch.softmax(model(x), dim=1)[0]
    top = torch.topk(probabilities, 5)
    with open(args.out, "w") as f:
        json.dump({"indices": top.indices.tolist(), "probabilities": top.values.tolist()}, f)


STAGES = ["conv1", "layer1", "layer2", "layer3", "layer4"]


def step(args):
    torch.manual_seed(args.seed)
    model = resnet50("fine_tuning", args.num_classes)
    backbone = {k: v for k, v in read_safetensors(args.weights).items() if not k.startswith("fc.")}
    model.load_state_dict(backbone, strict=False)
    def state():
        return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}

    def batch_norm(name):
        return name.startswith("bn1.") or ".bn" in name or ".downsample.1." in name

    write_safetensors(f"{args.out}/start.safetensors", state())
    frozen = STAGES[:STAGES.index(args.trainable_from)]
    params = []
    for name, p in model.named_parameters():
        p.requires_grad = name.split(".")[0] not in frozen and not batch_norm(name)
        if p.requires_grad:
            params.append(p)
    model.eval()  # BatchNorm on its statistics, dropout off
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed)) * 4 - 2
    y = torch.arange(args.batch) % args.num_classes
    optimizer = torch.optim.SGD(params, lr=1.0)
    loss = torch.nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    optimizer.step()
    write_safetensors(f"{args.out}/after.safetensors", state())
    x.numpy().astype("<f4").tofile(f"{args.out}/x.f32")
    with open(f"{args.out}/step.json", "w") as f:
        json.dump({"loss": loss.item(), "labels": y.tolist()}, f)


def pixels(args):
    """The bytes torchvision's PIL transforms give each image: evaluation transform, or a given crop box resized (and flipped)."""
    from PIL import Image
    from torchvision import transforms
    from torchvision.transforms import functional

    with open(args.out, "wb") as out:
        for image in args.images:
            rgb = Image.open(image).convert("RGB")
            if args.box:
                left, top, width, height = args.box
                rgb = functional.resized_crop(rgb, top, left, height, width, [args.size, args.size])
            else:
                rgb = transforms.CenterCrop(args.size)(transforms.Resize(args.resize)(rgb))
            if args.flip:
                rgb = functional.hflip(rgb)
            out.write(rgb.tobytes())


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--sizes", type=int, nargs="+", default=[224, 64])
    m.add_argument("--float16", action="store_true")
    m.add_argument("--pth", action="store_true")
    t = sub.add_parser("pth")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--marker", required=True)
    c = sub.add_parser("check")
    c.add_argument("--weights", required=True)
    c.add_argument("--head", choices=["linear", "fine_tuning"], default="linear")
    c.add_argument("--num-classes", type=int, default=1000)
    c.add_argument("--input", required=True)
    c.add_argument("--size", type=int, required=True)
    c.add_argument("--logits-out", required=True)
    r = sub.add_parser("predict")
    r.add_argument("--weights", required=True)
    r.add_argument("--image", required=True)
    r.add_argument("--size", type=int, default=224)
    r.add_argument("--resize-at-224", type=int, default=256)
    r.add_argument("--out", required=True)
    st = sub.add_parser("step")
    st.add_argument("--weights", required=True)
    st.add_argument("--out", required=True)
    st.add_argument("--size", type=int, default=32)
    st.add_argument("--batch", type=int, default=8)
    st.add_argument("--num-classes", type=int, default=10)
    st.add_argument("--trainable-from", choices=STAGES, default="layer3")
    st.add_argument("--seed", type=int, default=0)
    x = sub.add_parser("pixels")
    x.add_argument("--out", required=True)
    x.add_argument("--size", type=int, required=True)
    x.add_argument("--resize", type=int)
    x.add_argument("--box", type=int, nargs=4, help="left top width height: RandomResizedCrop's crop at this box")
    x.add_argument("--flip", action="store_true")
    x.add_argument("images", nargs="+")
    v = sub.add_parser("conv")
    v.add_argument("--dir", required=True)
    args = p.parse_args()
    torch.set_num_threads(2)
    {"make": make, "check": check, "predict": predict, "pth": pth, "conv": conv, "pixels": pixels, "step": step}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
