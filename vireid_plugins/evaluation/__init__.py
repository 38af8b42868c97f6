"""Official SYSU-MM01 / RegDB / LLCM metrics, the fast-reid evaluators built on them, and fast-reid's ReidEvaluator for
single-modality datasets (imports register them)."""
from .build import DEFAULT_EVALUATOR, EVALUATOR_REGISTRY, build_vireid_evaluator
from .cross_modality import CrossModalityEvaluator, RegDBEvaluator, SYSUEvaluator
from .features import FeatureCollector, extract_features
from .llcm import LLCMEvaluator
from .rank import eval_llcm, eval_regdb, eval_sysu, llcm_removed, summarize_trials, sysu_removed
from .single_modality import SingleModalityEvaluator
from .table import format_comparison_table, format_results_table

__all__ = [k for k in globals() if not k.startswith("_")]
