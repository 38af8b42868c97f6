#!/usr/bin/env python
"""Train and evaluate several ReID models on the same data and budget, and print one table.

The "benchmark beside other ReID models" use case: each config (ours, or fast-reid's stock ones such as
``configs/Market1501/bagtricks_R50.yml``) is trained by :class:`~vireid_plugins.engine.VIReIDTrainer` (fast-reid's
trainer with its parts: the same loader and transforms, and fast-reid's samplers by name) on the same dataset, then
evaluated once with that dataset's protocol (SYSU-MM01: 10 gallery trials, all and indoor search).

Only budget, input size and device change a config, alike for every one:

* data: ``DATASETS.ROOT``, ``NAMES`` and ``TESTS`` from ``--data-root`` and ``--dataset``;
* length: ``SOLVER.MAX_EPOCH`` = ``--epochs`` of ``DATALOADER.ITERS_PER_EPOCH`` = ``--iters-per-epoch`` iterations of
  ``SOLVER.IMS_PER_BATCH`` = ``--batch`` images; the config's schedule is scaled to that length: epoch keys
  (``SOLVER.STEPS``, ``SOLVER.DELAY_EPOCHS``) by ``epochs / MAX_EPOCH``, iteration keys (``SOLVER.WARMUP_ITERS``,
  ``SOLVER.FREEZE_ITERS``) by the ratio of the two runs' iterations (the config's own iterations per epoch are its
  ``DATALOADER.ITERS_PER_EPOCH``, or its train set's published size // ``IMS_PER_BATCH``, see :data:`TRAIN_IMAGES`);
* input: ``INPUT.SIZE_TRAIN`` / ``SIZE_TEST`` = ``--size``;
* device: ``MODEL.DEVICE`` = ``--device``; mixed precision (``SOLVER.AMP``) only on CUDA; no ImageNet download
  (``MODEL.BACKBONE.PRETRAIN False``, every model starts from random weights); ``DATALOADER.NUM_WORKERS`` =
  ``--workers``; ``SEED`` = ``--seed``;
* ``--opts KEY VALUE ...``: further options for every config (e.g. ``DATASETS.SYSU.NUM_TRIALS 2``).

Each config runs in a process of its own. Reported per model: parameters (millions), Rank-1 / mAP / mINP of each
search mode (x100, mean over trials), training throughput (images per second of wall time of ``trainer.train()``,
data loading and hooks included, no evaluation) and peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the
process's resident-set high-water mark after training, interpreter and imports included).

Usage (from the repository root)::

    python tools/benchmark_models.py --data-root datasets/synthetic/demo --dataset SYSUMM01 \\
        --configs configs/Synthetic/agw_supervised.yml configs/Market1501/bagtricks_R50.yml \\
        configs/Market1501/AGW_R50.yml configs/Market1501/sbs_R50.yml --out logs/benchmark_models
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# published train-set sizes (images) of fast-reid's datasets, for the iterations per epoch of their stock configs
TRAIN_IMAGES = {"Market1501": 12936, "DukeMTMC": 16522, "MSMT17": 32621}
METRICS = ("Rank-1", "mAP", "mINP")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", required=True, help="config files, one model each")
    parser.add_argument("--data-root", required=True, help="DATASETS.ROOT of every run")
    parser.add_argument("--dataset", default="SYSUMM01", help="train and test dataset of every run")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iters-per-epoch", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32, help="SOLVER.IMS_PER_BATCH")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 32], metavar=("H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="DATALOADER.NUM_WORKERS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="logs/benchmark_models", help="one OUTPUT_DIR per model, and the tables")
    parser.add_argument("--opts", nargs="*", default=[], help="KEY VALUE options applied to every config")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)  # internal: the config of this child process
    parser.add_argument("--result", help=argparse.SUPPRESS)  # internal: where the child writes its row
    args = parser.parse_args(argv)
    if len(args.opts) % 2:
        parser.error(f"--opts takes KEY VALUE pairs, got {len(args.opts)} values")
    return args


def model_name(config: str) -> str:
    """``configs/Market1501/bagtricks_R50.yml`` -> ``Market1501/bagtricks_R50``."""
    path = os.path.relpath(os.path.abspath(config), os.path.join(ROOT, "configs"))
    return os.path.splitext(path)[0]


def own_iters_per_epoch(cfg) -> int:
    """Iterations per epoch the config was written for."""
    if cfg.DATALOADER.ITERS_PER_EPOCH > 0:
        return cfg.DATALOADER.ITERS_PER_EPOCH
    names = tuple(cfg.DATASETS.NAMES)
    if len(names) == 1 and names[0] in TRAIN_IMAGES:
        return max(1, TRAIN_IMAGES[names[0]] // cfg.SOLVER.IMS_PER_BATCH)
    raise ValueError(f"cannot tell the iterations per epoch the config was written for (DATALOADER.ITERS_PER_EPOCH "
                     f"0, DATASETS.NAMES {names} not in {sorted(TRAIN_IMAGES)}): set DATALOADER.ITERS_PER_EPOCH in it")


def adapt(cfg, args):
    """The config with the benchmark's budget, input size and device (see the module docstring), in place."""
    epochs, iters = args.epochs, args.iters_per_epoch
    epoch_ratio = epochs / cfg.SOLVER.MAX_EPOCH
    iter_ratio = epochs * iters / (cfg.SOLVER.MAX_EPOCH * own_iters_per_epoch(cfg))
    s = cfg.SOLVER
    s.STEPS = sorted({max(1, min(epochs, round(step * epoch_ratio))) for step in s.STEPS})
    s.DELAY_EPOCHS = min(epochs - 1, round(s.DELAY_EPOCHS * epoch_ratio))
    s.WARMUP_ITERS = round(s.WARMUP_ITERS * iter_ratio)
    s.FREEZE_ITERS = round(s.FREEZE_ITERS * iter_ratio)
    s.MAX_EPOCH, s.IMS_PER_BATCH, s.CHECKPOINT_PERIOD = epochs, args.batch, epochs
    s.AMP.ENABLED = bool(s.AMP.ENABLED) and args.device.startswith("cuda")
    cfg.DATALOADER.ITERS_PER_EPOCH, cfg.DATALOADER.NUM_WORKERS = iters, args.workers
    cfg.DATASETS.ROOT, cfg.DATASETS.NAMES, cfg.DATASETS.TESTS = args.data_root, (args.dataset,), (args.dataset,)
    cfg.INPUT.SIZE_TRAIN = cfg.INPUT.SIZE_TEST = list(args.size)
    cfg.MODEL.DEVICE, cfg.MODEL.BACKBONE.PRETRAIN, cfg.MODEL.WEIGHTS = args.device, False, ""
    cfg.TEST.EVAL_PERIOD, cfg.TEST.EVAL_AT_START = 0, False  # evaluated once, after the timed training
    cfg.DATASETS.SYSU.WITHIN_MODALITY = False  # every model scored on the same official modes
    cfg.SEED, cfg.OUTPUT_DIR = args.seed, os.path.join(args.out, model_name(args.run_one))
    cfg.merge_from_list(list(args.opts))
    return cfg


def peak_memory_mib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_one(args) -> dict:
    """Train and evaluate ``args.run_one`` in this process; its table row."""
    import torch
    from fastreid.config import get_cfg
    from fastreid.utils.logger import setup_logger

    import vireid_plugins  # noqa: F401  (compat shims and registration before fastreid's modules)
    from vireid_plugins import add_vireid_config
    from vireid_plugins.engine import VIReIDTrainer, seed_everything
    from vireid_plugins.engine.validation import validate_config

    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.merge_from_file(args.run_one)
    adapt(cfg, args)
    cfg.freeze()
    validate_config(cfg)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logger(cfg.OUTPUT_DIR)
    seed_everything(cfg.SEED)
    trainer = VIReIDTrainer(cfg)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    peak = peak_memory_mib(args.device)
    results = VIReIDTrainer.test(trainer.cfg, trainer.model)
    from vireid_plugins.evaluation.table import split_modes

    backbone = cfg.MODEL.BACKBONE
    return {"model": model_name(args.run_one),
            "architecture": f"{cfg.MODEL.META_ARCHITECTURE}, {backbone.NAME.replace('build_', '')} {backbone.DEPTH}",
            "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6,
            "modes": {mode: {k: float(metrics[k]) for k in METRICS} for mode, metrics in split_modes(results).items()},
            "train_images_per_s": cfg.SOLVER.MAX_EPOCH * trainer.iters_per_epoch * cfg.SOLVER.IMS_PER_BATCH / seconds,
            "train_seconds": seconds, "peak_memory_mib": peak, "device": args.device,
            "torch_threads": torch.get_num_threads()}


def format_table(rows) -> str:
    """One row per model; Rank-1 / mAP / mINP per search mode."""
    from tabulate import tabulate

    modes = list(dict.fromkeys(mode for row in rows for mode in row["modes"]))
    headers = ["model", "architecture", "params (M)"] + [f"{mode} {m}" for mode in modes for m in METRICS] + [
        "train img/s", "peak memory (MiB)"]
    table = [[row["model"], row["architecture"], f"{row['params_m']:.2f}"]
             + [f"{row['modes'][mode][m]:.2f}" if mode in row["modes"] else "-" for mode in modes for m in METRICS]
             + [f"{row['train_images_per_s']:.1f}", f"{row['peak_memory_mib']:.0f}"] for row in rows]
    return tabulate(table, headers=headers, tablefmt="pipe", disable_numparse=True)


def main(argv=None):
    args = parse_args(argv)
    if args.run_one:
        row = run_one(args)
        tmp = f"{args.result}.tmp"
        with open(tmp, "w") as f:
            json.dump(row, f)
        os.replace(tmp, args.result)
        return
    os.makedirs(args.out, exist_ok=True)
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    rows = []
    for config in args.configs:
        if not os.path.isfile(config):
            raise SystemExit(f"--configs: {config!r} does not exist")
        result = os.path.join(args.out, model_name(config).replace(os.sep, "__") + ".json")
        cmd = [sys.executable, os.path.abspath(__file__), *passed, "--run-one", config, "--result", result]
        print(f"[{len(rows) + 1}/{len(args.configs)}] {model_name(config)}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{config} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
        with open(result) as f:
            rows.append(json.load(f))
    table = format_table(rows)
    budget = (f"{args.dataset} at {args.data_root}: {args.epochs} epochs x {args.iters_per_epoch} iterations x "
              f"{args.batch} images, {args.size[0]}x{args.size[1]}, {args.device}, seed {args.seed}")
    print(budget + "\n" + table)
    with open(os.path.join(args.out, "benchmark.md"), "w") as f:
        f.write(budget + "\n\n" + table + "\n")
    with open(os.path.join(args.out, "benchmark.json"), "w") as f:
        json.dump({"budget": budget, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
