"""Rebuild the suite's checkpoint folders from the parts the device returned: python .gpu/unpack.py DEST PART_DIR..."""
import io, shutil, sys, tarfile
from pathlib import Path

dest, parts = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
files = {p.name: p for d in parts for p in d.iterdir()}
with tarfile.open(files["small.tar.gz"]) as tar:
    tar.extractall(dest, filter="data")
chunks = sorted((n for n in files if n.startswith("tokenizers.tar.")), key=lambda n: int(n.rsplit(".", 1)[1]))
with tarfile.open(fileobj=io.BytesIO(b"".join(files[n].read_bytes() for n in chunks))) as tar:
    tar.extractall(dest, filter="data")
for name, path in files.items():
    if name.startswith("gen-"):
        folder = dest / "ck" / name[4:-len(".safetensors")]
        shutil.copy(path, folder / "generator" / "diffusion_pytorch_model.safetensors")
for gen in (dest / "ck").glob("*/generator"):
    manifest = (gen.parent / "mindmap.json").read_text()
    import json
    source = json.loads(manifest).get("tokenizer_source")
    if source:
        shutil.copy(dest / "ck" / source / "tokenizer" / "diffusion_pytorch_model.safetensors",
                    gen.parent / "tokenizer" / "diffusion_pytorch_model.safetensors")
missing = [str(p) for p in (dest / "ck").glob("*/*/config.json") if not (p.parent / "diffusion_pytorch_model.safetensors").exists()]
print("missing weights:", missing)
