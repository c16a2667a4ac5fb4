"""Hypernetworks for implicit neural representations: building blocks (SIREN, Fourier features,
coordinate grids, PSNR/SSIM) and D'OH random-projection compression (Gordon et al., ACCV 2024)."""

from .. import register_method
from .adapt import SetEncoder as SetEncoder
from .adapt import adapt_sgd as adapt_sgd
from .adapt import hyperplanes as hyperplanes
from .config import DOHConfig as DOHConfig
from .config import HyperPlanesConfig as HyperPlanesConfig
from .doh import DOH as DOH
from .doh import RANGE_BITS as RANGE_BITS
from .doh import SEED_BITS as SEED_BITS
from .doh import quantize as quantize
from .doh import quantized_bits as quantized_bits
from .siren import FourierFeatures as FourierFeatures
from .siren import Sine as Sine
from .siren import coordinate_grid as coordinate_grid
from .siren import fit_inr as fit_inr
from .siren import fourier_mlp as fourier_mlp
from .siren import psnr as psnr
from .siren import siren as siren
from .siren import ssim as ssim

__all__ = ["DOH", "RANGE_BITS", "SEED_BITS", "DOHConfig", "FourierFeatures", "HyperPlanesConfig", "SetEncoder",
           "Sine", "adapt_sgd", "coordinate_grid", "fit_inr", "fourier_mlp", "hyperplanes", "psnr", "quantize",
           "quantized_bits", "siren", "ssim"]

register_method("doh", DOH, DOHConfig)
register_method("hyperplanes", hyperplanes, HyperPlanesConfig)
