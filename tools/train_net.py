#!/usr/bin/env python
"""Train or evaluate a visible-infrared ReID model with fast-reid and vireid_plugins.

    python tools/train_net.py --config-file configs/SYSU-MM01/agw_supervised.yml [--resume] [--eval-only] \
        [--num-gpus N] [KEY VALUE ...]

A finished training run writes OUTPUT_DIR/final_metrics.json; --eval-only writes OUTPUT_DIR/eval_metrics.json
(``{"weights", "initial": null, "final"}``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vireid_plugins  # noqa: E402,F401  (compat shims + registration, before any fastreid import)
from vireid_plugins.engine import (  # noqa: E402
    VIReIDCheckpointer,
    VIReIDTrainer,
    default_vireid_setup,
    vireid_argument_parser,
)
from vireid_plugins.engine.hooks import write_metrics_json  # noqa: E402
from vireid_plugins.engine.launch import launch  # noqa: E402


def main(args):
    cfg = default_vireid_setup(args)
    if args.eval_only:
        if not cfg.MODEL.WEIGHTS:
            raise SystemExit("--eval-only needs the weights to evaluate: add MODEL.WEIGHTS path/to/model.pth")
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAIN = False
        model = VIReIDTrainer.build_model(cfg)
        # the head's own classifier has one row per training class, unknown here and unused at test time: it takes
        # the checkpoint's shape (every other tensor must match, see VIReIDCheckpointer)
        model.heads.resizable_state = True
        VIReIDCheckpointer(model, partial=cfg.MODEL.WEIGHTS_PARTIAL).load(cfg.MODEL.WEIGHTS)  # strict by default
        results = VIReIDTrainer.test(cfg, model)
        from fastreid.utils import comm  # after vireid_plugins' shims
        if comm.is_main_process() and cfg.OUTPUT_DIR:  # for scripts, as final_metrics.json of a training run
            write_metrics_json(os.path.join(cfg.OUTPUT_DIR, "eval_metrics.json"), None, results,
                               weights=cfg.MODEL.WEIGHTS)
        return results
    trainer = VIReIDTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = vireid_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
