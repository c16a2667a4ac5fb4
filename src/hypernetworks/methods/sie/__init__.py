"""SIE: split invariant-equivariant representations with a hypernetwork predictor (Garrido et al., ICML 2023)."""
