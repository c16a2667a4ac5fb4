"""Planar N-link chains as MuJoCo models, their LQR experts and closed-loop rollouts (ModuMorph's
data side, scaled down: Xiong et al., "Universal Morphology Control via Contextual Modulation",
ICML 2023).

A chain is N capsules stacked upward from a fixed pivot, each on a hinge about the y axis with
its own motor; upright (all joint angles 0) is an unstable equilibrium with zero torque. The
expert is the discrete-time LQR of MuJoCo's finite-difference linearisation around it.
mujoco, numpy and scipy are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

DT = 0.01  # simulation time step (s)


@dataclass(frozen=True)
class Chain:
    """A morphology: link lengths (m) and masses (kg), base to tip."""

    lengths: tuple[float, ...]
    masses: tuple[float, ...]

    def __post_init__(self):
        if not self.lengths or len(self.lengths) != len(self.masses) or min(self.lengths + self.masses) <= 0:
            raise ValueError(f"Chain: need as many positive lengths as positive masses, got {self.lengths}, "
                             f"{self.masses}.")

    @property
    def n(self) -> int:
        return len(self.lengths)

    def context(self, max_links: int) -> torch.Tensor:
        """Per-limb morphology context ``(N, 4)``: length, mass, position i/(N-1) (0 for N = 1), N/max_links."""
        n = self.n
        return torch.tensor([[length, mass, i / max(1, n - 1), n / max_links]
                             for i, (length, mass) in enumerate(zip(self.lengths, self.masses, strict=True))])

    def xml(self) -> str:
        """The MJCF string of the chain."""
        body, close = "", ""
        for i, (length, mass) in enumerate(zip(self.lengths, self.masses, strict=True)):
            pos = "0 0 0" if i == 0 else f"0 0 {self.lengths[i - 1]:.4f}"
            body += (f'<body name="link{i}" pos="{pos}"><joint name="j{i}" type="hinge" axis="0 1 0" damping="0.05"/>'
                     f'<geom type="capsule" fromto="0 0 0 0 0 {length:.4f}" size="0.03" mass="{mass:.4f}"/>')
            close += "</body>"
        motors = "".join(f'<motor joint="j{i}" gear="1"/>' for i in range(self.n))
        return (f'<mujoco><option timestep="{DT}" gravity="0 0 -9.81"/><worldbody>{body}{close}</worldbody>'
                f"<actuator>{motors}</actuator></mujoco>")


def _mujoco() -> Any:
    """The ``mujoco`` module, typed ``Any``: its bindings are a compiled extension that ships no type stubs."""
    import mujoco

    return mujoco


@functools.lru_cache(maxsize=1024)
def _compiled(chain: Chain) -> Any:
    """The chain's ``MjModel`` (compiled once per chain)."""
    return _mujoco().MjModel.from_xml_string(chain.xml())


def random_chain(gen: torch.Generator, links: tuple[int, int] = (2, 5)) -> Chain:
    """N uniform in ``links``; lengths U(0.2, 0.6) m, masses U(0.2, 1.5) kg."""
    n = int(torch.randint(links[0], links[1] + 1, (1,), generator=gen))
    lengths = (0.2 + 0.4 * torch.rand(n, generator=gen)).tolist()
    masses = (0.2 + 1.3 * torch.rand(n, generator=gen)).tolist()
    return Chain(tuple(round(v, 4) for v in lengths), tuple(round(v, 4) for v in masses))


def lqr_gain(chain: Chain, q_weight: float = 1.0, r_weight: float = 0.1) -> torch.Tensor:
    """Discrete-time LQR gain ``K (N, 2N)``, u = -K [q, q̇], around upright."""
    mujoco = _mujoco()
    import numpy as np
    from scipy.linalg import solve_discrete_are

    model = mujoco.MjModel.from_xml_string(chain.xml())
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    n = chain.n
    a, b = np.zeros((2 * n, 2 * n)), np.zeros((2 * n, n))
    mujoco.mjd_transitionFD(model, data, 1e-6, True, a, b, None, None)
    q, r = q_weight * np.eye(2 * n), r_weight * np.eye(n)
    p = solve_discrete_are(a, b, q, r)
    k = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
    return torch.tensor(k, dtype=torch.float32)


def rollout_batch(chains: Sequence[Chain], policy: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor,
                  steps: int) -> torch.Tensor:
    """Simulate B chains at once, with one ``policy`` call per step for the whole batch.

    Args:
        chains: the B chains (repeats allowed; each MuJoCo model is compiled once).
        policy: ``x (B, L, 2) -> u (B, L)``, per limb ``[q_i, q̇_i]`` and torque, limbs past a chain's N
            zero-padded (and ignored).
        x0: initial states ``(B, L, 2)``, L >= every chain's N.
        steps: simulation steps T.

    Returns:
        states ``(T + 1, B, L, 2)``. A rollout whose simulation diverges (a MuJoCo bad qacc / qpos / qvel /
        ctrl warning, after which it would silently reset to upright) is ``inf`` from then on; the policy
        sees zeros for it.
    """
    mujoco = _mujoco()
    import numpy as np

    if x0.dim() != 3 or x0.shape[0] != len(chains) or x0.shape[2] != 2 or x0.shape[1] < max(c.n for c in chains):
        raise ValueError(f"rollout_batch: expected x0 (B={len(chains)}, L >= max N, 2), got {tuple(x0.shape)}.")
    models = {c: _compiled(c) for c in set(chains)}
    datas = [mujoco.MjData(models[c]) for c in chains]
    for d, c, x in zip(datas, chains, x0, strict=True):
        d.qpos[:], d.qvel[:] = x[: c.n, 0].double().numpy(), x[: c.n, 1].double().numpy()
    w = mujoco.mjtWarning
    qacc, qpos, qvel, ctrl = (int(k) for k in (w.mjWARN_BADQACC, w.mjWARN_BADQPOS, w.mjWARN_BADQVEL, w.mjWARN_BADCTRL))
    alive = np.ones(len(chains), dtype=bool)
    states = [x0.clone()]
    for _ in range(steps):
        u = policy(torch.nan_to_num(states[-1], posinf=0.0)).double().numpy()  # (B, L)
        nxt = np.zeros(tuple(x0.shape))
        for b, (d, c) in enumerate(zip(datas, chains, strict=True)):
            if not alive[b]:
                continue
            d.ctrl[:] = u[b, : c.n]
            mujoco.mj_step(models[c], d)
            warned = d.warning
            if warned[qacc].number or warned[qpos].number or warned[qvel].number or warned[ctrl].number:
                alive[b] = False
                continue
            nxt[b, : c.n, 0], nxt[b, : c.n, 1] = d.qpos, d.qvel
        nxt[~alive] = np.inf
        states.append(torch.from_numpy(nxt).float())
        if not alive.any():
            break
    return torch.stack(states)


def rollout(chain: Chain, controller: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor,
            steps: int) -> torch.Tensor:
    """Simulate ``steps`` steps of one chain from ``x0 = [q, q̇] (2N,)`` with ``controller(x (2N,)) -> u (N,)``;
    returns the visited states ``(T + 1, 2N)``. If the simulation diverges (see ``rollout_batch``), the last
    row is ``inf`` and T <= steps."""
    n = chain.n
    states = rollout_batch([chain], lambda x: controller(x[0].T.reshape(-1)).unsqueeze(0), x0.view(2, n).T[None],
                           steps)[:, 0]  # (T + 1, N, 2)
    flat = states.transpose(1, 2).reshape(len(states), 2 * n)
    dead = torch.isinf(flat).any(1).nonzero()
    return flat if len(dead) == 0 else flat[: int(dead[0]) + 1]
