"""HyperCLIP: text-conditioned adaptation of a small image encoder (Akinwande et al., 2024)."""
