"""Official SYSU-MM01 / RegDB / LLCM metrics and the fast-reid evaluators built on them (imports register them)."""
from .build import EVALUATOR_REGISTRY, build_vireid_evaluator
from .cross_modality import CrossModalityEvaluator, RegDBEvaluator, SYSUEvaluator
from .features import FeatureCollector, extract_features
from .llcm import LLCMEvaluator
from .rank import eval_llcm, eval_regdb, eval_sysu, llcm_removed, summarize_trials, sysu_removed
from .table import format_comparison_table, format_results_table

__all__ = [k for k in globals() if not k.startswith("_")]
