"""Feature-map attention modules (registered in :data:`.build.ATTENTION_REGISTRY`)."""
from .build import ATTENTION_REGISTRY, build_attention
from .pa_cbam import PACBAM, identity_guided_regulariser

__all__ = ["ATTENTION_REGISTRY", "PACBAM", "build_attention", "identity_guided_regulariser"]
