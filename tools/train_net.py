#!/usr/bin/env python
"""Train or evaluate a visible-infrared ReID model with fast-reid and vireid_plugins.

    python tools/train_net.py --config-file configs/SYSU-MM01/agw_supervised.yml [--resume] [--eval-only] \
        [--num-gpus N] [KEY VALUE ...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastreid.utils.checkpoint import Checkpointer  # noqa: E402

import vireid_plugins  # noqa: E402,F401  (compat shims + registration, before any fastreid import)
from vireid_plugins.engine import VIReIDTrainer, default_vireid_setup, vireid_argument_parser  # noqa: E402
from vireid_plugins.engine.launch import launch  # noqa: E402


def main(args):
    cfg = default_vireid_setup(args)
    if args.eval_only:
        if not cfg.MODEL.WEIGHTS:
            raise SystemExit("--eval-only needs the weights to evaluate: add MODEL.WEIGHTS path/to/model.pth")
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAIN = False
        model = VIReIDTrainer.build_model(cfg)
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
        return VIReIDTrainer.test(cfg, model)
    trainer = VIReIDTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = vireid_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
