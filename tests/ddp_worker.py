"""Run by test_train.py under `torchrun --nproc_per_node 2`: trains a tiny generator with `train_generator`, and
records what this process saw (the batch rows of every step) and the weights it ended with."""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from mindmap.train import common
from mindmap.train.generator import train_generator


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def main():
    p = argparse.ArgumentParser()
    for flag in ("--tokenizer", "--paradigm", "--out", "--run-dir", "--record"):
        p.add_argument(flag, required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()

    seen, finished = [], {}
    batch, run = common.Trainer.batch, common.Trainer.run

    def recording_batch(self, *a, **k):
        rows = batch(self, *a, **k)
        seen.append(rows.tolist())
        return rows

    def recording_run(self, *a, **k):
        seconds = run(self, *a, **k)
        finished.update(rank=self.accelerator.process_index, processes=self.accelerator.num_processes,
                        weights=weights_digest(self.unwrapped()))
        return seconds

    common.Trainer.batch, common.Trainer.run = recording_batch, recording_run
    train_generator(args.out, tokenizer=args.tokenizer, paradigm=args.paradigm, steps=args.steps, batch=args.batch,
                    preset="tiny", run_dir=args.run_dir, cpu=True)
    Path(args.record, f"rank{finished['rank']}.json").write_text(json.dumps({**finished, "seen": seen}))


if __name__ == "__main__":
    main()
