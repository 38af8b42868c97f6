"""Official SYSU-MM01 / RegDB metrics and the fast-reid evaluators built on them (imports register them)."""
from .build import EVALUATOR_REGISTRY, build_vireid_evaluator
from .cross_modality import CrossModalityEvaluator, RegDBEvaluator, SYSUEvaluator
from .features import FeatureCollector, extract_features
from .rank import eval_regdb, eval_sysu, summarize_trials
from .table import format_comparison_table, format_results_table

__all__ = [k for k in globals() if not k.startswith("_")]
