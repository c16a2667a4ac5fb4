"""Generated adapters and steering vectors (HyperFormer, Karimi Mahabadi et al., ACL 2021; Text-to-
LoRA, Charakorn et al., ICML 2025; HyperSteer, Sun et al., 2025).
"""
