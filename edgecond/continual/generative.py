"""A VAE generator for Avalanche's GenerativeReplay, sized to a buffer's bytes.

Avalanche 0.6's own `MlpVAE` has fixed hidden widths (400 and 128: 2.1 M values on 32x32x3
images, about 7x the 10-IPC CIFAR budget's 307,200 floats) and its decoder ends in MNIST's
normalisation. This
one keeps `MlpVAE`'s design -- an MLP encoder to a Gaussian latent, an MLP decoder, Avalanche's
`VAE_loss` and `VAETraining` -- with the width chosen so that every value it keeps (encoder
included: the device goes on training it) fits the bytes at float32, and with its output in the
stream's space: sigmoid pixels in [0, 1], normalised as the stream was.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from avalanche.models.generator import Generator

LATENT = 16  # the latent size MlpVAE defaults to


def _mlp(*widths: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.LeakyReLU())
    return layers


class SizedVAE(Generator, nn.Module):
    """Encoder D -> h -> h/2 -> (mean, log-variance) of `latent` dims; decoder latent -> h/2 -> h -> D."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: int, latent: int = LATENT,
                 stats: tuple | None = None, device: str = "cpu"):
        super().__init__()
        d, half = int(torch.Size(image_shape).numel()), max(1, hidden // 2)
        self.shape, self.dim, self.device = tuple(image_shape), latent, torch.device(device)
        self.encoder = nn.Sequential(nn.Flatten(), *_mlp(d, hidden, half), nn.LeakyReLU())
        self.calc_mean, self.calc_logvar = nn.Linear(half, latent), nn.Linear(half, latent)
        self.decoder = nn.Sequential(*_mlp(latent, half, hidden, d), nn.Sigmoid())
        c = image_shape[0]
        mean, std = stats if stats else ([0.0] * c, [1.0] * c)
        self.register_buffer("out_mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1), persistent=False)
        self.register_buffer("out_std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1), persistent=False)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (self.decoder(z).view(-1, *self.shape) - self.out_mean) / self.out_std

    def get_features(self, x):
        return self.encoder(x)

    def generate(self, batch_size=None, condition=None):
        z = torch.randn(batch_size or 1, self.dim, device=self.out_mean.device)
        x = self.decode(z)
        return x if batch_size else x.squeeze(0)

    def forward(self, x):
        h = self.encoder(x)
        mean, logvar = self.calc_mean(h), self.calc_logvar(h)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        return self.decode(z), mean, logvar


def vae_values(image_shape: tuple[int, int, int], hidden: int, latent: int = LATENT) -> int:
    """Parameters of SizedVAE(image_shape, hidden, latent), without building it."""
    d, half = int(torch.Size(image_shape).numel()), max(1, hidden // 2)
    linear = lambda a, b: a * b + b  # noqa: E731
    return (linear(d, hidden) + linear(hidden, half) + 2 * linear(half, latent)
            + linear(latent, half) + linear(half, hidden) + linear(hidden, d))


def sized_hidden(image_shape: tuple[int, int, int], budget_bytes: int, latent: int = LATENT) -> int:
    """The widest hidden layer whose VAE's float32 values fit `budget_bytes`; refuses a budget
    too small for even a 1-unit VAE (its output layer's biases alone are D values)."""
    if 4 * vae_values(image_shape, 1, latent) > budget_bytes:
        raise ValueError(f"{budget_bytes:,} bytes cannot hold a VAE for {tuple(image_shape)} images "
                         f"({4 * vae_values(image_shape, 1, latent):,} bytes at the smallest width)")
    hidden = 1
    while 4 * vae_values(image_shape, hidden + 1, latent) <= budget_bytes:
        hidden += 1
    return hidden
