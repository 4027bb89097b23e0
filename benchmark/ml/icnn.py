"""Input-convex networks, Brenier maps and the injective decoder of LID-VAE and IL-LID-VAE.

The decoder D(z) = grad G2(Bmat grad G1(z)) (Wang et al. 2021) with potentials
G_i(u) = F_i(u) + (lam_i / 2) ||u||^2, F_i input-convex networks (Amos et al. 2017) and
Bmat an injective lift. With lam_i > 0 it is (lam_1 * sigma_min(Bmat) * lam_2)-inverse-
Lipschitz (Kinoshita et al. 2023); lam_1 = lam_2 = 0 is the LID-VAE decoder.

Gradients of the potentials are taken with ``torch.func.grad``, which works inside
``torch.no_grad()`` (returning detached values) and under ``vmap`` (packed runs), but not inside
``torch.inference_mode()``; it gives the same numbers as ``torch.autograd.grad``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NEGATIVE_SLOPE = 0.2
ICNNInit = Literal["fan-in", "reference", "inverse-width"]
INIT_LOG_STD = 0.1  # spread of log W around its mean at initialisation


def initial_log_weight(init: ICNNInit, in_dim: int, hidden: int, num_layers: int, gain: float = 1.0) -> float:
    """Mean of log W for the non-negative weights of an ICNN at initialisation.

    The gradient map of an ICNN depends on its input only through the potential's curvature,
    which scales as about ``hidden**num_layers * W**num_layers / in_dim`` with the input layer's
    default (fan-in) scale. So the scale of W decides whether the Brenier map, and the LID
    decoder built from two of them, depends on its input at all:

    - ``fan-in``: W = (1.5 * gain * in_dim) ** (1 / num_layers) / hidden, which gives the map's
      Jacobian a scale of about ``gain`` (0.3 to 2.5 for in_dim 2 to 12288, hidden 64 to 1024,
      1 to 3 layers), like a plain MLP's; the decoder's Jacobian scales as gain**2.
    - ``reference``: log W = -4 (W about 0.018), the public LIDVAE reimplementations' init;
      the decoder's Jacobian is then about 0.1 for 28x28 data, 250 for 2-D data.
    - ``inverse-width``: W = 1 / hidden, this benchmark's init before 2026-12: the LID decoder's
      Jacobian is about 1e-6 at init (constant in z: collapse caused by the init, not the method).

    ``gain`` multiplies W for every scheme except ``fan-in``, where it sets the Jacobian scale.
    """
    if gain <= 0:
        raise ValueError(f"the ICNN init gain must be > 0, got {gain}")
    if init == "fan-in":
        return math.log(1.5 * gain * in_dim) / num_layers - math.log(hidden)
    if init == "reference":
        return -4.0 + math.log(gain)
    if init == "inverse-width":
        return -math.log(hidden) + math.log(gain)
    raise ValueError(f"unknown ICNN init {init!r}; valid: fan-in, reference, inverse-width")


class ICNN(nn.Module):
    """Input-convex network F: u [..., n] -> F(u) [...], convex in u.

    h_0 = leaky_relu(A_0 u + b_0)^2, h_{i+1} = leaky_relu(W_i h_i + A_{i+1} u + b_{i+1}) for
    i = 0..k-1 (width ``hidden``, the last one 1), F(u) = h_k; slope 0.2. W_i = exp(P_i) is
    non-negative, A_i and b_i are free; no batch-norm (examples stay independent). P_i starts
    at N(m, 0.1^2) with m from :func:`initial_log_weight` (``init``, ``gain``).
    """

    def __init__(self, in_dim: int, hidden: int, num_layers: int = 2, init: ICNNInit = "fan-in",
                 gain: float = 1.0):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"an ICNN needs num_layers >= 1, got {num_layers}")
        self.splits = [hidden] * num_layers + [1]
        self.inputs = nn.Linear(in_dim, sum(self.splits))  # A_0..A_k and b_0..b_k, stacked
        mean = initial_log_weight(init, in_dim, hidden, num_layers, gain)
        self.log_weights = nn.ParameterList(
            nn.Parameter(INIT_LOG_STD * torch.randn(n_out, hidden) + mean)
            for n_out in self.splits[1:])

    def weights(self) -> list[Tensor]:
        """The non-negative matrices W_0..W_{k-1} ([hidden, hidden] ..., last [1, hidden])."""
        return [p.exp() for p in self.log_weights]

    def forward(self, u: Tensor) -> Tensor:
        a = self.inputs(u).split(self.splits, dim=-1)
        h = F.leaky_relu(a[0], NEGATIVE_SLOPE).square()
        for w, a_next in zip(self.weights(), a[1:]):
            h = F.leaky_relu(F.linear(h, w) + a_next, NEGATIVE_SLOPE)
        return h.squeeze(-1)


class BrenierMap(nn.Module):
    """u [..., n] -> grad G(u) [..., n], G(u) = F(u) + (lam / 2) ||u||^2 with F an :class:`ICNN`.

    The map is monotone, and lam-strongly monotone (hence lam-inverse-Lipschitz) for lam > 0.
    ``strong_convexity`` (lam) is a buffer: saved with the state dict, settable by a schedule.
    The second-order graph is built only when gradients are enabled by the caller; under
    ``torch.no_grad()`` the output is detached.
    """

    def __init__(self, dim: int, hidden: int, strong_convexity: float = 0.0, num_layers: int = 2,
                 init: ICNNInit = "fan-in", gain: float = 1.0):
        super().__init__()
        self.potential = ICNN(dim, hidden, num_layers, init, gain)
        self.register_buffer("strong_convexity", torch.tensor(float(strong_convexity)))

    def forward(self, u: Tensor) -> Tensor:
        grad = torch.func.grad(lambda v: self.potential(v).sum())(u)
        return grad + self.strong_convexity * u


class InjectiveLift(nn.Module):
    """y [..., d] -> Bmat y [..., D] with Bmat an injective D x d matrix (D >= d).

    Fixed (default): zero padding Bmat = [I_d; 0], sigma_min = 1. Trainable: a free D x d
    matrix whose singular values are clamped to [s_min, s_max] through its SVD at every call,
    so sigma_min >= s_min.
    """

    def __init__(self, d: int, D: int, trainable: bool = False, s_min: float = 1.0, s_max: float = 10.0):
        super().__init__()
        if D < d:
            raise ValueError(f"an injective lift needs data size D >= latent size d, got D={D}, d={d}: "
                             f"use a latent_dim of at most {D}")
        if not 0 < s_min <= s_max:
            raise ValueError(f"lift singular-value bounds need 0 < s_min <= s_max, got {s_min}, {s_max}")
        self.d, self.D, self.s_min, self.s_max = d, D, s_min, s_max
        # Random init: distinct singular values keep the SVD's gradient finite.
        self.raw = nn.Parameter(torch.randn(D, d) / math.sqrt(D)) if trainable else None

    @property
    def sigma_min(self) -> float:
        """Guaranteed lower bound on the smallest singular value of Bmat."""
        return 1.0 if self.raw is None else self.s_min

    def matrix(self) -> Tensor:
        """Bmat [D, d] (for the fixed padding, on the default device)."""
        if self.raw is None:
            return torch.eye(self.D, self.d)
        u, s, vh = torch.linalg.svd(self.raw, full_matrices=False)
        return (u * s.clamp(self.s_min, self.s_max)) @ vh

    def forward(self, y: Tensor) -> Tensor:
        if self.raw is None:
            return F.pad(y, (0, self.D - self.d))
        return y @ self.matrix().T


class LIDDecoder(nn.Module):
    """Injective decoder z [..., d] -> grad G2(Bmat grad G1(z)) reshaped to [..., *shape].

    The output is the likelihood's natural parameter, like any decoder's: logits for
    ``bernoulli``, means for ``gaussian`` and ``sigma``. ``lam1`` / ``lam2`` are the strong
    convexities of the latent-space and data-space potentials (0 for LID-VAE); ``init`` and
    ``gain`` set both ICNNs' non-negative weights at initialisation (:func:`initial_log_weight`).
    """

    def __init__(self, latent_dim: int, shape: tuple[int, ...], hidden_latent: int = 512,
                 hidden_data: int = 512, num_layers: int = 2, lam1: float = 0.0, lam2: float = 0.0,
                 trainable_lift: bool = False, s_min: float = 1.0, s_max: float = 10.0,
                 init: ICNNInit = "fan-in", gain: float = 1.0):
        super().__init__()
        self.shape = tuple(shape)
        size = math.prod(self.shape)
        self.latent_map = BrenierMap(latent_dim, hidden_latent, lam1, num_layers, init, gain)
        self.lift = InjectiveLift(latent_dim, size, trainable_lift, s_min, s_max)
        self.data_map = BrenierMap(size, hidden_data, lam2, num_layers, init, gain)

    def forward(self, z: Tensor) -> Tensor:
        out = self.data_map(self.lift(self.latent_map(z)))
        return out.reshape(*z.shape[:-1], *self.shape)

    def set_strong_convexity(self, lam1: float | Tensor, lam2: float | Tensor) -> None:
        """Set the potentials' strong convexities (e.g. from a schedule), in place."""
        self.latent_map.strong_convexity.fill_(lam1)
        self.data_map.strong_convexity.fill_(lam2)

    @property
    def inverse_lipschitz(self) -> float:
        """lam1 * sigma_min(Bmat) * lam2: ||D(a) - D(b)|| >= this * ||a - b|| for all a, b."""
        return (float(self.latent_map.strong_convexity) * self.lift.sigma_min
                * float(self.data_map.strong_convexity))
