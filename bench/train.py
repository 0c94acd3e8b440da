"""Training throughput: netae's bucketed batches vs the seed approach, same model and data.

The seed approach is the reference project's loop: each epoch, random batches of windows (256 by
default, its original batch size), each a Python list of per-window tensors padded to the batch
maximum with ``pad_sequence`` and run through the packed path
(``pack_padded_sequence(enforce_sorted=False)``). Both runs use the same windows
(NOTE [windows]), scaled features, hidden size, initial weights, optimiser, learning-rate schedule
and clipping, and the same number of epochs (not the same wall time); both validation losses are
the masked MSE over the validation flows, computed by the same function. Their epochs alternate,
so a busy machine slows both alike; pkt/s are medians over epochs.

    python bench/train.py [CAPTURE] [--device cpu|cuda|auto] [--epochs N] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netae.config import Settings, TrainSettings  # noqa: E402
from netae.features import fit_scaler  # noqa: E402
from netae.model import build_model, make_windows, masked_mse, step_mask  # noqa: E402
from netae.pipeline import featurize_files, validation_mask  # noqa: E402
from netae.score import padded_values, resolve_device, set_threads  # noqa: E402
from netae.tables import Features  # noqa: E402
from netae.train import FINAL_LR_FRACTION, EpochStats, evaluate_loss, train_model  # noqa: E402

DEFAULT_CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "eval" / "train_benign.pcap"


class SeedApproach:
    """The reference loop, one epoch per ``run_epoch`` call (so the two runs can interleave)."""

    def __init__(self, x: Features, is_val: np.ndarray, settings: Settings, device: str, batch_size: int) -> None:
        ts = settings.train
        self.windows = make_windows(x.offsets, settings.flows.max_packets)
        win_val = is_val[self.windows.flow]
        self.fit = np.flatnonzero(~win_val)
        self.val_windows = self.windows.take(np.flatnonzero(win_val))
        self.values = torch.from_numpy(x.values)
        self.values_z = padded_values(x.values)
        self.device = device
        self.batch_size = batch_size
        self.grad_clip = ts.grad_clip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ts.seed)
            self.model = build_model(x.values.shape[1], settings.model).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=ts.learning_rate)
        self.n_batches = math.ceil(len(self.fit) / batch_size)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=ts.epochs * self.n_batches, eta_min=ts.learning_rate * FINAL_LR_FRACTION
        )
        self.n_packets = int(self.windows.length[self.fit].sum())
        self.rng = np.random.default_rng(ts.seed)

    def run_epoch(self) -> tuple[float, float]:
        """One epoch: (training pkt/s, validation loss after it)."""
        t0 = time.perf_counter()
        perm = self.fit[self.rng.permutation(len(self.fit))]
        self.model.train()
        for b in range(self.n_batches):
            sel = perm[b * self.batch_size : (b + 1) * self.batch_size]
            starts, lengths = self.windows.start[sel].tolist(), self.windows.length[sel].tolist()
            seqs = [self.values[s : s + n] for s, n in zip(starts, lengths, strict=True)]
            lengths_cpu = torch.tensor(lengths)
            batch = pad_sequence(seqs, batch_first=True).to(self.device)
            lengths_dev = lengths_cpu.to(self.device)
            recon = self.model(batch, lengths_cpu, lengths_dev, input_path="packed")
            loss = masked_mse(batch, recon, step_mask(lengths_dev, batch.shape[1]))
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
        rate = self.n_packets / (time.perf_counter() - t0)
        val = evaluate_loss(self.model, self.values_z, self.val_windows, device=self.device, input_path="packed")
        return rate, val


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", nargs="?", type=Path, default=DEFAULT_CAPTURE)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: netae's default)")
    parser.add_argument(
        "--seed-batch-size", type=int, default=256, help="the seed approach's batch (its original setting)"
    )
    args = parser.parse_args(argv)

    train = TrainSettings(epochs=args.epochs, patience=args.epochs, threads=args.threads, device=args.device)
    settings = Settings(train=train).check()
    device = resolve_device(args.device)
    threads = set_threads(args.threads) if device == "cpu" else torch.get_num_threads()

    t0 = time.perf_counter()
    featurized = featurize_files([str(args.capture)], settings=settings)
    is_val = validation_mask(featurized.flows, settings.train.val_fraction)
    features = featurized.features
    scaler = fit_scaler(features, np.repeat(~is_val, features.lengths))
    x = scaler.transform(features)
    windows = make_windows(x.offsets, settings.flows.max_packets)
    print(
        f"{args.capture.name}: {x.n_flows} flows ({int((~is_val).sum())} fit), {len(x.values)} packets, "
        f"{windows.n_windows} windows of <= {settings.flows.max_packets}, {x.values.shape[1]} features, "
        f"featurized in {time.perf_counter() - t0:.1f} s; device {device}, {threads} threads, "
        f"hidden {settings.model.hidden_size}, {args.epochs} epochs, batch: netae {settings.train.batch_size} "
        f"(bucketed, about that many windows' packets per batch), seed {args.seed_batch_size} (random)"
    )

    # Epochs alternate (netae, seed, netae, ...) so that both see the same load on the machine.
    seed = SeedApproach(x, is_val, settings, device, args.seed_batch_size)
    history: list[EpochStats] = []
    seed_rates: list[float] = []
    seed_losses: list[float] = []

    def on_epoch(stats: EpochStats) -> None:
        history.append(stats)
        rate, loss = seed.run_epoch()
        seed_rates.append(rate)
        seed_losses.append(loss)
        print(
            f"  epoch {stats.epoch:3d}: netae {stats.packets_per_s:9,.0f} pkt/s val {stats.val_loss:.4f}"
            f" | seed {rate:9,.0f} pkt/s val {loss:.4f}",
            flush=True,
        )

    result = train_model(x, is_val=is_val, settings=settings, on_epoch=on_epoch)

    netae_rate = statistics.median(s.packets_per_s for s in history)
    seed_rate = statistics.median(seed_rates)
    print(f"netae input path: {result.input_path}; pkt/s are medians over epochs (training phase only)")
    print(
        f"validation loss after {args.epochs} epochs: netae {history[-1].val_loss:.4f} "
        f"(best {min(s.val_loss for s in history):.4f}), seed {seed_losses[-1]:.4f} (best {min(seed_losses):.4f})"
    )
    print(
        f"train: {netae_rate / seed_rate:.1f}x the seed approach "
        f"(netae {netae_rate:,.0f} pkt/s, seed {seed_rate:,.0f} pkt/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
