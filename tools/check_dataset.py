#!/usr/bin/env python
"""Check the datasets of a config before training: strict parsing of the split files, then every image decoded.

    python tools/check_dataset.py --config-file configs/SYSU-MM01/usl_baseline.yml [--workers N] [KEY VALUE ...]

Every dataset of ``DATASETS.NAMES`` and ``DATASETS.TESTS`` is built as training would build it (same
``DATASETS.*`` keys); all problems are reported, then the exit status is 1 if there was any, 0 otherwise.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vireid_plugins  # noqa: E402,F401  (compat shims + registration, before any fastreid import)
from vireid_plugins import add_vireid_config  # noqa: E402
from vireid_plugins.data.build import build_vireid_dataset  # noqa: E402
from vireid_plugins.data.verify import dataset_image_paths, find_unreadable_images  # noqa: E402


def check(cfg, workers: int) -> int:
    """Log a summary per dataset and every problem; returns the number of problems."""
    logger = logging.getLogger("fastreid.vireid.check_dataset")
    problems = 0
    for name in dict.fromkeys(list(cfg.DATASETS.NAMES) + list(cfg.DATASETS.TESTS)):
        try:
            dataset = build_vireid_dataset(cfg, name)
        except (OSError, ValueError, KeyError) as e:
            logger.error(f"{name}: {type(e).__name__}: {e}")
            problems += 1
            continue
        if hasattr(dataset, "show_train"):
            dataset.show_train()
            dataset.show_test()
        paths = dataset_image_paths(dataset)
        bad = find_unreadable_images(paths, workers)
        for path, why in bad:
            logger.error(f"{name}: unreadable image {path}: {why}")
        logger.info(f"{name}: {len(paths) - len(bad)} of {len(paths)} images readable")
        problems += len(bad)
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--workers", type=int, default=4, help="threads decoding images")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs overriding the config")
    args = parser.parse_args(argv)
    from fastreid.config import get_cfg  # after vireid_plugins: its compat shims must come first
    from fastreid.utils.logger import setup_logger

    setup_logger(name="fastreid")
    cfg = get_cfg()
    add_vireid_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.DATASETS.VERIFY_IMAGES = False  # checked here, with every problem listed
    problems = check(cfg, args.workers)
    print(f"check_dataset: {'no problem found' if not problems else f'{problems} problem(s), see above'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
