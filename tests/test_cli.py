"""The CLI contract: `models`, `generate`, `bench`, `data` (key names are relied on)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mindmap", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def run(capsys, *args) -> tuple[int, str, str]:
    """`python -m mindmap ARGS` in this process (no second start-up of torch and diffusers): exit code, stdout,
    stderr. `cli` above runs the real module as a subprocess where that matters."""
    from mindmap.__main__ import main
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:                    # argparse's own errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_models_json(tiny_root, capsys):
    rc, stdout, _ = run(capsys, "models", "--json", "--root", tiny_root)
    assert rc == 0
    models = json.loads(stdout)
    assert [m["name"] for m in models] == ["tiny-depth", "tiny-hybrid", "tiny-mar", "tiny-masked", "tiny-mq",
                                           "tiny-raster", "tiny-scale", "tiny-text", "tiny-text-hybrid",
                                           "tiny-text-masked"]
    by_name = {m["name"]: m for m in models}
    steps = by_name["tiny-masked"]["controls"]["steps"]
    assert (steps["type"], steps["default"], steps["min"], steps["max"]) == ("int", 8, 1, 64)
    assert by_name["tiny-hybrid"]["paradigm"] == "hybrid" and by_name["tiny-hybrid"]["controls"]["prefix"]["max"] == 64
    depth = by_name["tiny-depth"]["controls"]["depth"]
    assert (depth["default"], depth["min"], depth["max"]) == (3, 1, 3)
    m = by_name["tiny-raster"]
    assert m["paradigm"] == "raster" and m["conditioning"] == "class"
    assert {"class", "seed", "cfg", "temperature", "top_k", "top_p"} <= set(m["controls"])
    assert m["controls"]["top_k"]["max"] == 32 and m["controls"]["class"]["choices"][0] == "face-smiling"


def test_generate_is_deterministic_and_writes_frames_and_gif(tiny_root, tmp_path, capsys):
    base = ["generate", "--model", "tiny-raster", "--class", "food-fruit", "--root", tiny_root]
    rc, stdout, _ = run(capsys, *base, "--seed", 3, "--out", tmp_path / "a.png", "--frames", tmp_path / "fr",
                        "--gif", tmp_path / "a.gif")
    assert rc == 0
    out = json.loads(stdout)
    assert out["model"] == "tiny-raster" and out["network_calls"] == 64 and out["frames"] == 16
    assert out["seconds"] > 0
    assert len(list((tmp_path / "fr").glob("*.png"))) == 16 and (tmp_path / "a.gif").stat().st_size > 0
    assert run(capsys, *base, "--seed", 3, "--out", tmp_path / "b.png")[0] == 0
    assert run(capsys, *base, "--seed", 4, "--out", tmp_path / "c.png")[0] == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


@pytest.mark.parametrize("args, needle", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "tiny-raster", "--class", "not-a-class"], "class must be one of"),
    (["--model", "tiny-raster", "--cfg", "99"], "cfg must be"),
    (["--model", "tiny-raster", "--top-p", "0"], "top_p must be"),
    (["--model", "tiny-raster", "--cfg", "abc"], "error: generate: argument --cfg: invalid float value: 'abc'"),
])
def test_generate_errors_exit_nonzero_with_one_line(tiny_root, tmp_path, capsys, args, needle):
    rc, _, err = run(capsys, "generate", *args, "--root", tiny_root, "--out", tmp_path / "x.png")
    assert rc == 2
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_outputs_are_checked_before_any_work(tiny_root, tmp_path, capsys):
    from mindmap.__main__ import main
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir.png").mkdir()
    base = ["generate", "--model", "tiny-raster", "--class", "food-fruit", "--root", str(tiny_root)]
    ok = str(tmp_path / "ok.png")
    cases = [(["--out", str(tmp_path / "a_file" / "x.png")], f"--out {tmp_path / 'a_file' / 'x.png'}: "
              f"{tmp_path / 'a_file'} is not a folder"),
             (["--out", str(tmp_path / "a_dir.png")], "is a folder; give a file name"),
             (["--out", str(tmp_path / "x.jpg")], "--out must be a .png file"),
             (["--out", ok, "--frames", str(tmp_path / "a_file")], "--frames"),
             (["--out", ok, "--gif", str(tmp_path / "a_dir.png")], "--gif must be a .gif file"),
             (["--out", "/proc/x.png"], "--out /proc/x.png: cannot write in /proc")]
    before = sorted(tmp_path.rglob("*"))
    for extra, needle in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert sorted(tmp_path.rglob("*")) == before                         # nothing written, nothing left over
    assert main(["grid", "--model", "tiny-raster", "--root", str(tiny_root), "--classes", "food-fruit",
                 "--out", str(tmp_path / "a_dir.png")]) == 2
    assert main(["bench", "--model", "tiny-raster", "--root", str(tiny_root), "--write", str(tmp_path)]) == 2
    assert main(["eval", "--model", "tiny-raster", "--root", str(tiny_root), "--tune"]) == 2   # no --sweep
    assert "--write" in capsys.readouterr().err


def test_train_convert_data_figures_fetch_check_their_output_folders_first(tmp_path, capsys):
    from mindmap.__main__ import main
    (tmp_path / "a_file").write_text("x")
    a_file = str(tmp_path / "a_file")
    cases = [(["train", "tokenizer", "--out", a_file], f"--out {a_file} exists and is not a folder"),
             (["train", "generator", "--out", str(tmp_path / "g"), "--run-dir", "/proc/run"],
              "--run-dir /proc/run: cannot write in /proc"),
             (["convert", "llamagen", "--random-init", "--out", f"{a_file}/model"],
              f"--out {a_file}/model: {a_file} is not a folder"),
             (["data", "emoji", "--root", a_file], f"--root {a_file} exists and is not a folder"),
             (["figures", "--out", a_file], f"--out {a_file} exists and is not a folder"),
             (["fetch", "llamagen-b-256", "--root", a_file], f"--root {a_file} exists and is not a folder")]
    for argv, needle in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]   # nothing started, nothing left over


def test_a_missing_or_empty_checkpoints_root_is_named(tmp_path, capsys):
    from mindmap.__main__ import main
    cases = [(["models", "--root", str(tmp_path / "nope")], f"checkpoints root {tmp_path / 'nope'} is not a folder"),
             (["generate", "--model", "x", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")],
              "is not a folder"),
             (["models", "--root", str(tmp_path)], f"no models under --root {tmp_path}"),
             (["generate", "--model", "x", "--root", str(tmp_path), "--out", str(tmp_path / "x.png")],
              f"unknown model 'x': no models under {tmp_path}")]
    for argv, needle in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err


def test_bench_json(tiny_root):
    out = json.loads(cli("bench", "--model", "tiny-raster", "--root", tiny_root, "--repeats", 1, "--json").stdout)
    for d in (out, out["baseline"]):
        for key in ("tokens_per_s", "images_per_s", "first_frame_ms", "network_calls"):
            assert d[key] > 0
    assert out["network_calls"] == out["baseline"]["network_calls"] == 64
    assert out["speedup"] > 0 and out["codes_per_call"] == 1


def test_bench_sweeps_repeat_and_combine(tiny_root, capsys):
    from mindmap.__main__ import main
    from mindmap.bench import bench
    from mindmap.cli_controls import parse_sweep
    sweep = parse_sweep(["zip_window=3", "zip_window=1 jacobi_window=1,4"])
    assert sweep == [{"zip_window": 3}, {"zip_window": 1, "jacobi_window": 1}, {"zip_window": 1, "jacobi_window": 4}]
    rows = bench("tiny-raster", repeats=1, root=tiny_root, sweep=sweep)["sweep"]
    assert [r["controls"] for r in rows] == sweep
    assert [r["network_calls"] for r in rows[:2]] == [7 * 3 + 8, 7 * 1 + 8]        # rows start 3 and 1 apart
    assert rows[0]["codes_per_call"] == round(64 / 29, 2) and rows[2]["network_calls"] <= 15
    assert main(["bench", "--model", "tiny-raster", "--root", str(tiny_root), "--sweep", "zip_window=1 jacobi"]) == 2
    assert "--sweep must look like CONTROL=V1,V2" in capsys.readouterr().err


def test_bench_times_training_steps_of_a_paradigm_on_a_tokenizers_codes(capsys):
    """`bench --train PARADIGM --tokenizer FOLDER`: seconds per training step of a fresh generator, as `train
    generator` trains it (here VAR's, tiny, on the shipped multi-scale tokenizer's codes of 8 emoji)."""
    tok = ROOT / "checkpoints" / "msvq-arena-emoji32"
    rc, out, _ = run(capsys, "bench", "--train", "scale", "--tokenizer", tok, "--preset", "tiny", "--batch", 8,
                     "--train-steps", 3, "--json")
    out = json.loads(out)
    assert rc == 0 and (out["paradigm"], out["batch"], out["steps"]) == ("scale", 8, 3) and "compiled" not in out
    assert 0 < out["eager"]["min"] <= out["eager"]["median"] <= out["eager"]["max"]
    rc, _, err = run(capsys, "bench", "--train", "raster", "--tokenizer", tok, "--preset", "tiny")
    assert rc == 2 and "a raster generator models a vq tokenizer, this one is msvq" in err
    rc, _, err = run(capsys, "bench", "--train", "scale", "--tokenizer", tok, "--preset", "huge")
    assert rc == 2 and "preset must be one of ['tiny', 'small', 'arena'], got 'huge'" in err
    rc, _, err = run(capsys, "bench", "--train", "scale")
    assert rc == 2 and "--train needs --tokenizer FOLDER" in err


def test_data_without_npm_fails_clearly(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "MINDMAP_DATA": str(tmp_path / "d")}
    proc = subprocess.run([sys.executable, "-m", "mindmap", "data", "emoji"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert proc.returncode != 0 and "npm is not installed" in proc.stderr
