#!/usr/bin/env python
"""Export a trained model to TorchScript and/or ONNX, then check the export against the eager model.

    python tools/export_model.py --config-file configs/SYSU-MM01/agw_supervised.yml \
        --format torchscript onnx --out exports/agw MODEL.WEIGHTS logs/sysu/model_final.pth

writes ``exports/agw.ts`` and ``exports/agw.onnx``. Both take ``images`` (``B x 3 x H x W`` float RGB on the
0-255 scale, H x W = INPUT.SIZE_TEST; infrared images replicated to 3 channels) and ``modality`` (``B`` int64,
0 visible, 1 infrared) and return ``features`` (``B x D``, L2-normalised: the test features the evaluators
rank); normalisation with the model's pixel mean/std is inside. The check feeds a seeded batch of both
modalities (``--check-batch`` images) to the eager model and to each export (TorchScript with torch, ONNX with
onnxruntime) and exits with an error naming the file and the difference when any feature differs by more
than ``--atol``. ONNX needs ``pip install 'vireid_plugins[export]'`` (onnx, onnxruntime).
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import vireid_plugins  # noqa: E402,F401  (compat shims + registration)
from vireid_plugins.deployment.export import (  # noqa: E402
    ExportableReID,
    export_onnx,
    export_torchscript,
    max_abs_difference,
    run_onnx,
)
from vireid_plugins.deployment.inference import build_inference_model, setup_cfg  # noqa: E402

FORMATS = {"torchscript": ".ts", "onnx": ".onnx"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--format", nargs="+", choices=tuple(FORMATS), default=list(FORMATS))
    parser.add_argument("--out", required=True, help="output path without extension (.ts / .onnx are added)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    parser.add_argument("--check-batch", type=int, default=8, help="images of the equality check (both modalities)")
    parser.add_argument("--atol", type=float, default=1e-5, help="largest accepted feature difference")
    parser.add_argument("--seed", type=int, default=0, help="seed of the check batch")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. MODEL.WEIGHTS")
    return parser.parse_args(argv)


def check_batch(size, batch, seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, *size, generator=generator) * 255
    return images, (torch.arange(batch) % 2)[torch.randperm(batch, generator=generator)]  # both modalities


def main(argv=None):
    args = parse_args(argv)
    cfg = setup_cfg(args.config_file, list(args.opts) + ["MODEL.DEVICE", "cpu"])
    if not cfg.MODEL.WEIGHTS:
        logging.getLogger("fastreid.vireid.export").warning("MODEL.WEIGHTS is empty: exporting the untrained model")
    model = build_inference_model(cfg)
    wrapper = ExportableReID(model)
    size = tuple(int(v) for v in cfg.INPUT.SIZE_TEST)
    images, modality = check_batch(size, args.check_batch, args.seed)
    with torch.no_grad():
        eager = model({"images": images, "modality": modality}).flatten(1)
    report = {}
    for fmt in args.format:
        path = args.out + FORMATS[fmt]
        if fmt == "torchscript":
            export_torchscript(wrapper, path, size)
            with torch.no_grad():
                exported = torch.jit.load(path)(images, modality)
        else:
            export_onnx(wrapper, path, size, opset=args.opset)
            exported = run_onnx(path, images, modality)
        report[path] = max_abs_difference(eager, exported)
        print(f"wrote {path}: max |eager - exported| = {report[path]:.3e} on {args.check_batch} images")
    bad = {path: diff for path, diff in report.items() if not diff <= args.atol}
    if bad:
        raise ValueError(f"exported features differ from the eager model by more than --atol {args.atol}: {bad}")
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (FileNotFoundError, ImportError, KeyError, ValueError) as exc:
        sys.exit(f"error: {exc}")
