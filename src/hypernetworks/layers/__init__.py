"""Layers whose weights are generated from their own input (data-conditioned hypernetworks)."""

from .hypermixer import AttentionMixing as AttentionMixing
from .hypermixer import HyperMixerBlock as HyperMixerBlock
from .hypermixer import HyperMixing as HyperMixing
from .hypermixer import MLPMixing as MLPMixing
from .hypermixer import SequenceClassifier as SequenceClassifier

__all__ = ["AttentionMixing", "HyperMixerBlock", "HyperMixing", "MLPMixing", "SequenceClassifier"]
