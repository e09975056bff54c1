"""LlamaGen's own sampler against MINDmap's on the same weights: token generation at batch 1 on this machine.

    python benchmarks/llamagen_upstream.py --upstream DIR [--repeats 3] [--out FOLDER]

DIR holds FoundationVision/LlamaGen (commit ce98ec41803a74a90ce68c40ababa9eaeffeb4ec was measured; its
`autoregressive/models/{gpt,generate}.py`, `tokenizer/tokenizer_image/vq_model.py` and `utils/drop_path.py`
are imported). The script builds their class-conditional GPT-B (256 px, 16 x 16 tokens) with their own
initialisation (torch seed 0) and their VQ-16, saves both in their checkpoint format, converts them with
`python -m mindmap convert llamagen`, and times, per seed, the 256 codes of one image (no VQ decode) at
cfg 4, temperature 1, top-k 0, top-p 1:
- theirs: `autoregressive.models.generate.generate`, eager (their `--compile` needs a GPU build of Triton);
- MINDmap's at several settings (plain, bfloat16, ZipAR, SJD).
Medians of `--repeats` seeds after one warm-up each; a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [("float32", {}), ("bfloat16", {}), ("float32", {"zip_window": 2}), ("float32", {"zip_window": 4}),
            ("float32", {"jacobi_window": 8})]
CLASS, CFG = 207, 4.0


def timed(fn, repeats: int) -> tuple[float, float, float]:
    """(median, min, max) seconds of fn(seed) over seeds 1..repeats, after fn(0) as a warm-up."""
    fn(0)
    times = []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        fn(seed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, help="keep the converted checkpoint folder here (default: a temporary one)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.upstream))
    from autoregressive.models.generate import generate
    from autoregressive.models.gpt import GPT_models
    from tokenizer.tokenizer_image.vq_model import VQ_models

    torch.manual_seed(0)
    theirs = GPT_models["GPT-B"](vocab_size=16384, block_size=256, num_classes=1000, cls_token_num=1,
                                 model_type="c2i").eval()
    vq = VQ_models["VQ-16"](codebook_size=16384, codebook_embed_dim=8)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save({"model": theirs.state_dict()}, tmp / "c2i_B_256.pt")
        torch.save({"model": vq.state_dict()}, tmp / "vq_ds16_c2i.pt")
        del vq
        out = args.out or tmp / "llamagen-b-256"
        subprocess.run([sys.executable, "-m", "mindmap", "convert", "llamagen", "--size", "B", "--gpt",
                        str(tmp / "c2i_B_256.pt"), "--tokenizer", str(tmp / "vq_ds16_c2i.pt"), "--out", str(out),
                        "--force"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        sys.path.insert(0, str(ROOT))
        from mindmap.pipeline import Pipeline

        cond = torch.tensor([CLASS])

        def upstream(seed: int):
            torch.manual_seed(seed)
            return generate(theirs, cond, 256, cfg_scale=CFG, temperature=1.0, top_k=0, top_p=1.0, sample_logits=True)

        rows = [("LlamaGen `generate` (theirs)", "float32", "", timed(upstream, args.repeats), 256)]
        for dtype, controls in SETTINGS:
            pipe = Pipeline.from_pretrained(out, device="cpu", dtype=dtype)
            calls = []

            def ours(seed: int, pipe=pipe, controls=controls, calls=calls):
                frame = pipe(**{"class": pipe.classes[CLASS]}, seed=seed, cfg=CFG, temperature=1.0, top_k=0,
                             top_p=1.0, **controls)                 # the picture is never read: no VQ decode
                calls.append(frame.network_calls)
            rows.append(("MINDmap", dtype, ", ".join(f"{k}={v}" for k, v in controls.items()),
                         timed(ours, args.repeats), statistics.mean(calls[1:])))
    base = rows[0][3][0]
    print(f"GPT-B, class {CLASS}, cfg {CFG}, batch 1, {torch.get_num_threads()} threads, median of {args.repeats} seeds")
    print("\n| sampler | dtype | controls | network calls | s/image (min–max) | speed-up over theirs |\n"
          "|---|---|---|---|---|---|")
    for name, dtype, controls, (med, low, high), calls in rows:
        print(f"| {name} | {dtype} | {controls or 'defaults'} | {calls:g} | {med:.2f} ({low:.2f}–{high:.2f}) | "
              f"{base / med:.2f}x |")


if __name__ == "__main__":
    main()
