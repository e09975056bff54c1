"""`python -m mindmap soak`: the short version of the long run (every tiny model, good and bad requests)."""
from __future__ import annotations

import json

from gradio_client.exceptions import AppError

from mindmap.__main__ import main
from mindmap.soak import Call, outcome, plan


def test_a_short_soak_serves_the_good_refuses_the_bad_and_fails_none(tiny_root, capsys):
    # pictures kept 8 s: a tiny model's first pictures are re-used every few seconds and never expire mid-run (at
    # 3 s, one request in 40 once met Gradio's generic error: a re-used picture deleted as it was handed out)
    rc = main(["soak", "--root", str(tiny_root), "--requests", "30", "--concurrency", "3", "--seed", "1",
               "--request-seconds", "3", "--cache-seconds", "8",
               "--json"])
    out = json.loads(capsys.readouterr().out)
    print(json.dumps({k: v for k, v in out.items() if k != "models"}))   # shown when an assertion fails
    assert rc == 0 and out["failed"] == 0 and out["failures"] == []
    assert out["served"] >= 15 and out["refused"] >= 3
    assert out["served"] + out["stopped"] + out["refused"] + out["refused (budget)"] == 30
    assert len(out["models"]) == 10 and out["latency_s"]["served"]["p50"] > 0
    # every pipeline was loaded before the run: what the run adds is small (a leak of a picture per request
    # would be tens of MB here)
    assert [m["at"] for m in out["memory"][:2]] == ["started", "every model loaded"]
    assert out["rss_growth_after_loading_mb"] < 64
    assert out["memory"][1]["files"] > 0                 # the pictures sent went to the app's own temp folder
    assert out["memory"][-1]["at"].startswith("idle") and out["memory"][-1]["files"] == 0   # and left it


def test_the_plan_mixes_every_model_with_bad_requests_of_every_kind():
    models = [{"name": "a", "controls": {"class": {"type": "choice", "choices": ["x", "y"], "default": "x"},
                                         "seed": {"type": "int", "min": 0, "max": 9, "default": 0},
                                         "steps": {"type": "int", "min": 1, "max": 8, "default": 4}},
               "examples": []},
              {"name": "b", "controls": {"prompt": {"type": "text", "max_length": 300, "default": "p"},
                                         "cfg": {"type": "float", "min": 1.0, "max": 5.0, "default": 2.0}},
               "examples": ["red apple"]}]
    calls = plan(models, 400, seed=0)
    assert calls == plan(models, 400, seed=0) and calls != plan(models, 400, seed=1)
    good = [c for c in calls if c.valid and c.endpoint == "/generate"]
    assert {c.params["model"] for c in good} == {"a", "b"}
    assert all(1 <= c.params.get("steps", 1) <= 8 for c in good if c.params["model"] == "a")
    bad = {c.what for c in calls if not c.valid}
    assert bad == {"unknown model", "out of range", "not a number", "NaN", "classes of an unknown model",
                   "unknown control", "empty prompt", "prompt too long", "unknown class"}
    assert 0.1 < sum(not c.valid for c in calls) / len(calls) < 0.3


def test_outcomes_count_a_bad_request_served_or_a_fault_as_failed():
    good, bad = Call("/generate", {"model": "a"}, True, "a"), Call("/generate", {"model": "?"}, False, "unknown model")
    final = (None, None, None, None, "**step 8/8** · 8 network calls")
    assert outcome(good, final, None) == "served" and outcome(bad, final, None) == "failed"
    assert outcome(good, final[:4] + ("**step 3/8** · **stopped**: over",), None) == "stopped"
    assert outcome(bad, None, AppError("model must be one of: a; got '?'")) == "refused"
    assert outcome(good, None, AppError("cfg must be a number")) == "failed"
    assert outcome(good, None, AppError("this request would take about 41 s here")) == "refused (budget)"
    assert outcome(good, None, AppError("generation failed (KeyError: 3)")) == "failed"
    assert outcome(bad, None, ConnectionError("refused")) == "failed"
