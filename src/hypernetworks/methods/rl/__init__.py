"""Reinforcement learning with hypernetworks.

* Hyper critic / actor (Keynan, Sarafian, Kraus, "Recomposing the Reinforcement Learning Building
  Blocks with Hypernetworks", ICML 2021): ``HyperCritic`` Q(s, a) = f_{θ(s)}(a), ``HyperActor``
  π(s; c) = f_{θ(c)}(s), and compact ``TD3`` / ``SAC`` that take either them or the MLPs.
* HyperPPO (Hegde et al., "HyperPPO: A scalable method for finding small policies for robotic
  control", ICRA 2024): ``ArchPolicy``, PPO (``fit_ppo``) whose policies for many small MLP
  architectures come from one architecture-conditioned hypernetwork.
* ModuMorph (Xiong, Beck, Whiteson, "Universal Morphology Control via Contextual Modulation", ICML
  2023): ``ModuMorph`` generates per-limb embeddings and decoders from morphology context;
  ``ConcatContext`` is the shared-controller baseline; ``Chain`` / ``lqr_gain`` / ``rollout`` build
  planar N-link MuJoCo chains and their LQR experts.

gymnasium / mujoco are imported only inside the functions that run environments.
"""

from .. import register_method
from .agents import SAC as SAC
from .agents import TD3 as TD3
from .agents import Agent as Agent
from .agents import ReplayBuffer as ReplayBuffer
from .config import ActorConfig as ActorConfig
from .config import CriticConfig as CriticConfig
from .config import HyperPPOConfig as HyperPPOConfig
from .config import ModuMorphConfig as ModuMorphConfig
from .config import NetConfig as NetConfig
from .config import PPOConfig as PPOConfig
from .config import SACConfig as SACConfig
from .config import TD3Config as TD3Config
from .config import arch_space as arch_space
from .config import sized as sized
from .hyperppo import ArchPolicy as ArchPolicy
from .hyperppo import ArchValue as ArchValue
from .hyperppo import MaskedMLP as MaskedMLP
from .hyperppo import num_params as num_params
from .loop import Scaled as Scaled
from .loop import collect_states as collect_states
from .loop import evaluate as evaluate
from .loop import fit as fit
from .loop import gradient_probe as gradient_probe
from .modumorph import ConcatContext as ConcatContext
from .modumorph import ModuMorph as ModuMorph
from .morph import Chain as Chain
from .morph import lqr_gain as lqr_gain
from .morph import random_chain as random_chain
from .morph import rollout as rollout
from .nets import HyperActor as HyperActor
from .nets import HyperCritic as HyperCritic
from .nets import MLPActor as MLPActor
from .nets import MLPCritic as MLPCritic
from .nets import build_actor as build_actor
from .nets import build_critic as build_critic
from .ppo import Plain as Plain
from .ppo import evaluate_archs as evaluate_archs
from .ppo import fit_ppo as fit_ppo

register_method("hyper_critic", build_critic, CriticConfig, takes_target=False)
register_method("hyper_actor", build_actor, ActorConfig, takes_target=False)
register_method("hyperppo", ArchPolicy, HyperPPOConfig, takes_target=False)
register_method("modumorph", ModuMorph, ModuMorphConfig, takes_target=False)

__all__ = [
    "SAC", "TD3", "ActorConfig", "Agent", "ArchPolicy", "ArchValue", "Chain", "ConcatContext", "CriticConfig",
    "HyperActor", "HyperCritic", "HyperPPOConfig", "MLPActor", "MLPCritic", "MaskedMLP", "ModuMorph",
    "ModuMorphConfig", "NetConfig", "PPOConfig", "Plain", "ReplayBuffer", "SACConfig", "Scaled", "TD3Config",
    "arch_space", "build_actor", "build_critic", "collect_states", "evaluate", "evaluate_archs", "fit", "fit_ppo",
    "gradient_probe", "lqr_gain", "num_params", "random_chain", "rollout", "sized",
]
