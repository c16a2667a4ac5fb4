"""Layers whose weights are generated from their own input (data-conditioned hypernetworks)."""

from .dofa import DOFAViT as DOFAViT
from .dofa import DynamicPatchEmbed as DynamicPatchEmbed
from .hypermixer import AttentionMixing as AttentionMixing
from .hypermixer import HyperMixerBlock as HyperMixerBlock
from .hypermixer import HyperMixing as HyperMixing
from .hypermixer import MLPMixing as MLPMixing
from .hypermixer import SequenceClassifier as SequenceClassifier

__all__ = ["AttentionMixing", "DOFAViT", "DynamicPatchEmbed", "HyperMixerBlock", "HyperMixing", "MLPMixing",
           "SequenceClassifier"]
