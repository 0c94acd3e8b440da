"""The LSTM autoencoder, and the windows and batches it is fed from the ragged feature layout.

NOTE [input paths]
``packed`` runs both LSTMs on ``pack_padded_sequence(..., enforce_sorted=False)`` with lengths
on the CPU; the latent is the top layer's final hidden state. ``padded`` runs them on the padded
batch: the LSTMs are unidirectional, so outputs at real steps never depend on the padding after
them, the latent is the top layer's output gathered at ``length - 1``, and the loss masks padded
steps out with ``torch.where`` (never a multiplication, which would turn a non-finite padded value
into NaN). Both compute the same reconstructions at real steps (tested). On the CPU ``padded``
runs the fused oneDNN LSTM, which packed sequences cannot use; it is the ``auto`` choice there:
on train_benign.pcap with bucketed batches, one thread, it fits 64-97k pkt/s against 30-33k for
``packed``, at the same validation loss. On CUDA ``auto`` also picks ``padded`` (not measured
yet: bucketing leaves little padding, and cuDNN then runs one kernel per layer without the
sort and scatter that packing adds).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from netae.config import ModelSettings
from netae.windows import Windows, gather_batch, length_batches, make_windows, scoring_batches

__all__ = [
    "FlowAutoencoder",
    "Windows",
    "build_model",
    "gather_batch",
    "length_batches",
    "make_windows",
    "model_from_weights",
    "resolve_input_path",
    "scoring_batches",
    "weights_to_numpy",
]

log = logging.getLogger(__name__)


class FlowAutoencoder(nn.Module):
    """Encoder LSTM -> latent (last real step) repeated over the length -> decoder LSTM -> linear."""

    def __init__(self, n_features: int, *, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.hidden_size = hidden_size
        self.encoder = nn.LSTM(n_features, hidden_size, num_layers, batch_first=True)
        self.decoder = nn.LSTM(hidden_size, hidden_size, num_layers, batch_first=True)
        self.output = nn.Linear(hidden_size, n_features)

    def forward(
        self,
        x: torch.Tensor,
        lengths_cpu: torch.Tensor,
        lengths: torch.Tensor,
        *,
        input_path: str,
    ) -> torch.Tensor:
        """Reconstruct ``x`` (B, T, n_features); values at padded steps are meaningless.

        ``lengths_cpu`` (int64, CPU) feeds packing; ``lengths`` is the same on ``x``'s device.
        """
        batch, steps, _ = x.shape
        if input_path == "packed":
            packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
            _, (h_n, _) = self.encoder(packed)
            latent = h_n[-1]
            repeated = latent.unsqueeze(1).expand(batch, steps, self.hidden_size)
            packed_dec = pack_padded_sequence(repeated, lengths_cpu, batch_first=True, enforce_sorted=False)
            out_packed, _ = self.decoder(packed_dec)
            out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=steps)
        elif input_path == "padded":
            enc, _ = self.encoder(x)
            latent = enc[torch.arange(batch, device=x.device), lengths - 1]
            repeated = latent.unsqueeze(1).expand(batch, steps, self.hidden_size).contiguous()
            out, _ = self.decoder(repeated)
        else:
            raise ValueError(f"unknown input path {input_path!r}")
        recon: torch.Tensor = self.output(out)
        return recon


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) bool: true at real steps."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def squared_error(x: torch.Tensor, recon: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, F) float32 squared error, exactly 0 at padded steps whatever the padding holds."""
    diff = recon.float() - x.float()
    return torch.where(mask.unsqueeze(2), diff * diff, torch.zeros((), device=x.device))


def masked_mse(x: torch.Tensor, recon: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real steps and all features (NOTE [input paths])."""
    n_real = mask.sum() * x.shape[2]
    return squared_error(x, recon, mask).sum() / n_real


def build_model(n_features: int, settings: ModelSettings) -> FlowAutoencoder:
    return FlowAutoencoder(n_features, hidden_size=settings.hidden_size, num_layers=settings.num_layers)


def model_from_weights(weights: dict[str, np.ndarray], settings: ModelSettings) -> FlowAutoencoder:
    """A model with ``weights`` loaded; n_features comes from the encoder's input weights."""
    n_features = int(weights["encoder.weight_ih_l0"].shape[1])
    hidden_size = int(weights["encoder.weight_hh_l0"].shape[1])
    num_layers = sum(1 for name in weights if name.startswith("encoder.weight_ih_l"))
    model = FlowAutoencoder(n_features, hidden_size=hidden_size, num_layers=num_layers)
    if (hidden_size, num_layers) != (settings.hidden_size, settings.num_layers):
        log.warning(
            "weights have hidden_size=%d num_layers=%d; settings say %d/%d; using the weights'",
            hidden_size,
            num_layers,
            settings.hidden_size,
            settings.num_layers,
        )
    model.load_state_dict({name: torch.from_numpy(np.asarray(w, dtype=np.float32)) for name, w in weights.items()})
    return model


def weights_to_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """float32 numpy copies of the state dict, under its own names (what the model file saves)."""
    return {name: t.detach().to("cpu", torch.float32).numpy().copy() for name, t in model.state_dict().items()}


def resolve_input_path(input_path: str, device: str) -> str:
    """``auto`` -> ``padded`` on every device (see NOTE [input paths] for the measurements)."""
    if input_path == "auto":
        return "padded"
    return input_path
