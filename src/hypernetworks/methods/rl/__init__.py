"""Reinforcement learning with hypernetworks (Keynan et al., ICML 2021; HyperPPO, Hegde et al., ICRA
2024; ModuMorph, Xiong et al., ICML 2023).
"""
