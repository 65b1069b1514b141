"""Image embedding throughput: `embctl embed image:... -i DIR` against a plain script.

The plain script is what one writes without embctl: open each image with PIL (16-bit frames
scaled by min/max with numpy), run transformers' PIL image processor on the batch, run the
model, batch by batch, in one thread of Python (torch uses its own threads for the model).
embctl decodes and preprocesses in a worker pool beside the model.  Both run the same
randomly initialised transformers ResNet (served by the local test hub), as fresh processes,
interleaved, ``--runs`` rounds; the table gives medians.  The vector cache is off
(``--no-cache``): this measures computing, not cache hits.

    python bench/bench_image.py                         # 2,000 images, small ResNet
    python bench/bench_image.py --arch resnet50 --images 200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bin_path, clean_env, interleaved, local_hub, table, wall  # noqa: E402

ARCHS = {  # name: (hidden sizes, depths, layer type)
    "small": ((32, 64, 128, 256), (1, 1, 1, 1), "basic"),
    "resnet18": ((64, 128, 256, 512), (2, 2, 2, 2), "basic"),
    "resnet50": ((256, 512, 1024, 2048), (3, 4, 6, 3), "bottleneck"),
}
REPO = "embctl-bench/resnet"

PLAIN = r'''
import sys, json, numpy as np, torch
from pathlib import Path
from PIL import Image
from transformers import AutoModel, ConvNextImageProcessorPil
model_dir, listing, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
proc = ConvNextImageProcessorPil.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).eval()
paths = [json.loads(l)["path"] for l in open(listing)]
base = Path(listing).parent
def open_image(p):
    img = Image.open(base / p)
    if img.mode.startswith("I;16"):
        a = np.asarray(img).astype(np.float32)
        a = np.rint((a - a.min()) * 255.0 / max(a.max() - a.min(), 1)).astype(np.uint8)
        img = Image.fromarray(a)
    return img.convert("RGB")
out = []
with torch.no_grad():
    for i in range(0, len(paths), batch):
        imgs = [open_image(p) for p in paths[i:i + batch]]
        pixels = proc(imgs, return_tensors="pt")["pixel_values"]
        out.append(model(pixel_values=pixels).pooler_output.flatten(1).numpy())
np.save(sys.argv[4], np.concatenate(out))
'''


def make_dataset(folder: Path, count: int) -> None:
    """Half 16-bit single-channel infrared PNGs (640x512), half RGB JPEGs (640x480)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:512, 0:640].astype(np.float32)
    lines = []
    for i in range(count):
        cx, cy = rng.uniform(100, 540), rng.uniform(80, 430)
        if i % 2 == 0:
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 60.0 ** 2))
            frame = 8000 + 6 * x + 9000 * blob + rng.normal(0, 30, x.shape)
            Image.fromarray(frame.astype(np.uint16)).save(folder / f"ir_{i:05d}.png")
            name = f"ir_{i:05d}.png"
        else:
            small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((640, 480), Image.BICUBIC)
            img.save(folder / f"rgb_{i:05d}.jpg", quality=90)
            name = f"rgb_{i:05d}.jpg"
        lines.append(f'{{"path": "{name}"}}\n')
    (folder / "images.jsonl").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data", type=Path, default=None, help="reuse a generated image folder")
    args = parser.parse_args()

    from support.image_fixtures import build_resnet_repo

    tmp = Path(tempfile.mkdtemp(prefix="bench-image-"))
    data = args.data or tmp / "images"
    if not (data / "images.jsonl").exists() or \
            len((data / "images.jsonl").read_text().splitlines()) != args.images:
        print(f"generating {args.images} images in {data}", file=sys.stderr)
        make_dataset(data, args.images)
    hidden, depths, layer = ARCHS[args.arch]
    build_resnet_repo(tmp / "hub", REPO, size=224, hidden=hidden, depths=depths,
                      layer_type=layer)
    with local_hub(tmp / "hub") as hub:
        env = clean_env(HF_ENDPOINT=hub.url, HF_HOME=str(tmp / "hf"),
                        EMBCTL_HOME=str(tmp / "embctl"))
        embctl = [bin_path("embctl")]
        wall(embctl + ["pull", f"image:{REPO}", "-q"], env)
        snap = next((tmp / "hf" / "hub" / "models--embctl-bench--resnet" / "snapshots").iterdir())
        offline = {**env, "HF_HUB_OFFLINE": "1"}
        script = tmp / "plain.py"
        script.write_text(PLAIN)
        bs = str(args.batch_size)
        runs = {
            "plain script (PIL + image processor + model, batch by batch)": lambda: wall(
                [sys.executable, str(script), str(snap), str(data / "images.jsonl"), bs,
                 str(tmp / "plain.npy")], offline),
            "embctl embed -i DIR --no-cache": lambda: wall(
                embctl + ["embed", f"image:{REPO}", "-i", str(data), "--no-cache", "-q",
                          "--batch-size", bs, "-o", str(tmp / "embctl.npy")], offline),
        }
        medians = interleaved(runs, args.runs, warmup=0)
    import numpy as np

    plain = np.load(tmp / "plain.npy")
    mine = np.load(tmp / "embctl.npy")
    order = sorted(range(args.images), key=lambda i: f"{'ir' if i % 2 == 0 else 'rgb'}_{i:05d}")
    diff = float(np.abs(plain[order] - mine).max() / np.abs(plain).max())
    base = medians[next(iter(runs))]
    rows = [(name, f"{t:.1f}", f"{args.images / t:.1f}", f"{base / t:.2f}x")
            for name, t in medians.items()]
    print(f"{args.images} images (half 16-bit 640x512 PNG, half 640x480 JPEG), arch "
          f"{args.arch}, batch {bs}, {os.cpu_count()} cores, median of {args.runs}; "
          f"max relative difference of the vectors: {diff:.1e}")
    print(table(rows, ("run", "seconds", "images/s", "speed")))


if __name__ == "__main__":
    main()
