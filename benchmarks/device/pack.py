"""Split the suite's outputs into parts that fit the device's return limits (<= 8 files, <= 16 MiB each,
<= 60 MiB a part): part 1 first (logs, configs, tokenizers, the first generators), part 2 the rest."""
import io, os, sys, tarfile
from pathlib import Path

keep, out, part = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
MIB = 1 << 20
small = io.BytesIO()
with tarfile.open(fileobj=small, mode="w:gz") as tar:
    for p in sorted(keep.rglob("*")):
        if p.is_file() and not p.name.endswith(".safetensors") and "/state/" not in str(p) and p.suffix != ".pkl":
            tar.add(p, arcname=str(p.relative_to(keep)))
items = [("small.tar.gz", small.getvalue())]
toks = io.BytesIO()
with tarfile.open(fileobj=toks, mode="w") as tar:
    for p in sorted((keep / "ck").glob("*/tokenizer/*.safetensors")):
        if not (p.parent.parent / "generator").exists():       # a generator's copy of its tokenizer stays behind
            tar.add(p, arcname=str(p.relative_to(keep)))
data = toks.getvalue()
for k in range(0, len(data), 15 * MIB):
    items.append((f"tokenizers.tar.{k // (15 * MIB)}", data[k:k + 15 * MIB]))
for p in sorted((keep / "ck").glob("*/generator/*.safetensors")):
    items.append((f"gen-{p.parent.parent.name}.safetensors", p.read_bytes()))
parts, size, count = [[]], 0, 0
for name, blob in items:
    if size + len(blob) > 60 * MIB or count == 8:
        parts.append([])
        size = count = 0
    parts[-1].append((name, blob))
    size, count = size + len(blob), count + 1
print(f"{len(parts)} parts: " + " | ".join(", ".join(f"{n} {len(b) / MIB:.1f}M" for n, b in p) for p in parts))
if part <= len(parts):
    out.mkdir(parents=True, exist_ok=True)
    for name, blob in parts[part - 1]:
        (out / name).write_bytes(blob)
