"""Gaussian diffusion maths for the DDPM family: noise schedules, the forward process q(x_t | x_0), its posterior
q(x_{t-1} | x_t, x_0), the ancestral DDPM sampler (Ho et al. 2020), DDIM (Song et al. 2021) and the variational
bound in bits per dimension. No parameters: a model hands `predict(x_t, t) -> (eps, x0)` to the samplers.

Steps are indices 0..T-1 (the paper's t = index + 1). `alpha_bar[i]` is the product of (1 - beta) up to i, and
`alpha_bar_prev[i]` the one before (1 at i = 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")


def betas_for(schedule: str, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """linear: beta from beta_start to beta_end over T steps (DDPM's 1e-4 to 0.02 at T = 1000, scaled by 1000 / T
    for other T as in Improved DDPM); cosine: alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi / 2), s = 0.008, betas
    clipped at 0.999 (Nichol & Dhariwal 2021)."""
    if schedule == "linear":
        scale = 1000 / steps
        return torch.linspace(beta_start * scale, beta_end * scale, steps, dtype=torch.float64)
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    alpha_bar = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


class Diffusion:
    """The fixed quantities of one schedule, in float64 (cast to the input's dtype where used)."""

    def __init__(self, betas: torch.Tensor):
        self.betas = betas.double()
        self.steps = len(betas)
        self.alpha_bar = torch.cumprod(1 - self.betas, 0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        # q(x_{t-1} | x_t, x_0) = N(coef_x0 * x_0 + coef_xt * x_t, posterior_variance)
        self.posterior_variance = self.betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)
        # log variance with the first (zero) entry replaced by the second: p(x_0 | x_1)'s variance
        self.posterior_log_variance = torch.log(torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))
        self.coef_x0 = self.betas * self.alpha_bar_prev.sqrt() / (1 - self.alpha_bar)
        self.coef_xt = (1 - self.alpha_bar_prev) * (1 - self.betas).sqrt() / (1 - self.alpha_bar)

    @staticmethod
    def at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] shaped to broadcast against `like` ([N] -> [N, 1, 1, 1])."""
        out = values.to(like.device)[t].to(like.dtype)
        return out.reshape(len(t), *([1] * (like.dim() - 1)))

    # ---- the forward process and its posterior -------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar) x_0, (1 - alpha_bar) I), given the noise."""
        return self.at(self.alpha_bar.sqrt(), t, x0) * x0 + self.at((1 - self.alpha_bar).sqrt(), t, x0) * noise

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log variance) of q(x_{t-1} | x_t, x_0); the log variance is p(x_0 | x_1)'s at t = 0."""
        mean = self.at(self.coef_x0, t, xt) * x0 + self.at(self.coef_xt, t, xt) * xt
        return mean, self.at(self.posterior_log_variance, t, xt)

    # ---- what the network predicts -------------------------------------------------------------------
    def target(self, prediction: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target: epsilon (L_simple) or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0."""
        if prediction == "epsilon":
            return noise
        return self.at(self.alpha_bar.sqrt(), t, x0) * noise - self.at((1 - self.alpha_bar).sqrt(), t, x0) * x0

    def split(self, prediction: str, out: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, clip: bool):
        """(eps, x_0) from the network's output; with clip, x_0 is clamped to [-1, 1] and eps made to agree."""
        a, s = self.at(self.alpha_bar.sqrt(), t, xt), self.at((1 - self.alpha_bar).sqrt(), t, xt)
        if prediction == "epsilon":
            eps, x0 = out, (xt - s * out) / a
        else:
            eps, x0 = s * xt + a * out, a * xt - s * out
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (xt - a * x0) / s
        return eps, x0

    # ---- samplers ------------------------------------------------------------------------------------
    def ddpm(self, predict: Callable, x: torch.Tensor, generator: torch.Generator | None = None,
             keep: tuple[int, ...] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The ancestral sampler over all T steps, x_{t-1} ~ N(posterior mean of the predicted x_0, the posterior
        variance); no noise at the last step. Noise from `generator` on the CPU. Returns x_0 and {step: x_t} of
        the steps in `keep` (before the step is taken)."""
        kept = {}
        for i in reversed(range(self.steps)):
            if i in keep:
                kept[i] = x.detach().float().cpu()
            t = torch.full((len(x),), i, dtype=torch.long, device=x.device)
            _, x0 = predict(x, t)
            mean, log_var = self.posterior(x0, x, t)
            x = mean
            if i > 0:
                x = x + (0.5 * log_var).exp() * torch.randn(x.shape, generator=generator).to(x)
        return x, kept

    def ddim(self, predict: Callable, x: torch.Tensor, steps: int, eta: float = 0.0,
             generator: torch.Generator | None = None, keep: tuple[int, ...] = ()):
        """DDIM over `steps` evenly spaced steps of the T, with eta (0: deterministic; 1 over all T steps: the
        ancestral sampler). Returns x_0 and {step: x_t} of the steps in `keep` that it visits."""
        kept, visited = {}, self.ddim_steps(steps)
        for k in reversed(range(len(visited))):
            i = int(visited[k])
            if i in keep:
                kept[i] = x.detach().float().cpu()
            t = torch.full((len(x),), i, dtype=torch.long, device=x.device)
            eps, x0 = predict(x, t)
            ab = self.alpha_bar[i]
            ab_next = self.alpha_bar[int(visited[k - 1])] if k > 0 else torch.ones((), dtype=torch.float64)
            sigma = eta * ((1 - ab_next) / (1 - ab) * (1 - ab / ab_next)).sqrt()
            x = ab_next.sqrt().to(x) * x0 + (1 - ab_next - sigma**2).clamp(min=0).sqrt().to(x) * eps
            if float(sigma) > 0:
                x = x + sigma.to(x) * torch.randn(x.shape, generator=generator).to(x)
        return x, kept

    def ddim_steps(self, steps: int) -> torch.Tensor:
        """The steps DDIM visits: `steps` indices evenly spread over 0..T-1 (all of them when steps = T), always
        starting from the last, T-1 (pure noise; one step goes from there straight to x_0)."""
        if steps == 1:
            return torch.tensor([self.steps - 1])
        return torch.linspace(0, self.steps - 1, steps, dtype=torch.float64).round().long().unique()

    # ---- the variational bound -----------------------------------------------------------------------
    def prior_nats(self, x0: torch.Tensor) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) per example, in nats."""
        t = torch.full((len(x0),), self.steps - 1, dtype=torch.long, device=x0.device)
        mean = self.at(self.alpha_bar.sqrt(), t, x0) * x0
        var = self.at(1 - self.alpha_bar, t, x0)
        return normal_kl(mean, var.log(), torch.zeros_like(x0), torch.zeros_like(x0)).flatten(1).sum(1)

    def term_nats(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, x0_pred: torch.Tensor) -> torch.Tensor:
        """One term of the bound per example, in nats, from x_t ~ q(x_t | x_0) and the model's x_0 for it:
        KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0, -log p(x_0 | x_1) of the 8-bit pixels (a
        discretised Gaussian) at t = 0. p's variance is the posterior's (Ho et al.'s fixed sigma_t^2 = beta~_t)."""
        true_mean, log_var = self.posterior(x0, xt, t)
        mean, _ = self.posterior(x0_pred, xt, t)
        kl = normal_kl(true_mean, log_var, mean, log_var).flatten(1).sum(1)
        nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var).flatten(1).sum(1)
        return torch.where(t == 0, nll, kl)


def normal_kl(mean1, log_var1, mean2, log_var2) -> torch.Tensor:
    """KL(N(mean1, e^log_var1) || N(mean2, e^log_var2)), elementwise, in nats."""
    return 0.5 * (log_var2 - log_var1 + torch.exp(log_var1 - log_var2) + (mean1 - mean2) ** 2 * torch.exp(-log_var2)
                  - 1.0)


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(the 8-bit value of x) under N(mean, e^(2 log_scale)) integrated over the value's bin of width 2/255 in
    [-1, 1], the outermost bins reaching to +-infinity (DDPM's decoder L_0). x is on the 8-bit grid."""
    inv = torch.exp(-log_scale)
    upper = torch.special.ndtr(inv * (x - mean + 1 / 255))
    lower = torch.special.ndtr(inv * (x - mean - 1 / 255))
    tiny = 1e-12
    mass = torch.where(x < -0.999, upper, torch.where(x > 0.999, 1 - lower, upper - lower))
    return torch.log(mass.clamp(min=tiny))


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images on the 8-bit grid (the value each pixel was stored as)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1
