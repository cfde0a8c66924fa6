"""`ganforge eval`, cached reference features, and evaluation during training."""
import json

import numpy as np
import pytest
import torch

from ganforge.cli import main
from ganforge.data.paths import cache_dir
from ganforge.metrics import scoring
from ganforge.use import evaluate
from tests.helpers import require_fashion_mnist

TINY = ["model.g_width=4", "model.d_width=4", "model.z_dim=8", "log.progress=false",
        "log.sample_every=100", "log.log_every=5", "log.tensorboard=false"]


def test_eval_pair_same_folder_is_zero_and_cached(shapes, evaluator, monkeypatch, capsys, tmp_path):
    calls = []
    real = scoring.extract_features
    monkeypatch.setattr(scoring, "extract_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "r.json"
    assert main(["eval", "--real", str(shapes), "--fake", str(shapes), "--n", "100",
                 "--metrics", "fid,kid,pr,dc", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert abs(res["fid"]) < 1e-6
    assert res["precision"] == pytest.approx(1.0), res
    # many shapes repeat (radius 0): open balls, as in Naeem et al.'s code, never cover those
    assert 0.3 < res["coverage"] < 1.0 and res["density"] < 1.0, res
    cap = capsys.readouterr()
    assert "fid" in cap.out and "caveats" not in cap.out
    # 100 images per side: every estimate is flagged, in the JSON and as a warning on stderr
    assert [c.split(":")[0] for c in res["caveats"]] == ["fid", "kid", "kid", "pr", "dc"]
    assert "warning: fid:" in cap.err and "kid_std is 0 by construction" in cap.err
    n_first = len(calls)
    assert n_first >= 1
    # Second time: both sides come from the reference cache, no feature extraction at all.
    main(["eval", "--real", str(shapes), "--fake", str(shapes), "--n", "100", "--metrics", "fid"])
    assert len(calls) == n_first
    assert list((cache_dir() / "refstats").glob("*.pt"))


def test_reference_cache_key_changes_with_inputs(shapes, evaluator):
    ex = scoring.get_extractor("domain", data_spec=str(shapes))
    a = scoring.real_features(ex, str(shapes), "train", n=50)
    b = scoring.real_features(ex, str(shapes), "train", n=60)
    c = scoring.real_features(ex, str(shapes), "train", n=50, img_size=8)
    assert a["key"] != b["key"] and a["key"] != c["key"]
    assert a["features"].shape[0] == 50 and b["features"].shape[0] == 60


def test_eval_run_and_eval_during_training(shapes, evaluator, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(shapes), "--model", "dcgan", "--steps", "10", "--batch-size", "16",
                 "--out", str(run), "--eval-every", "5", "eval.n=64", "eval.split=train", *TINY]) == 0
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    fids = [r for r in rows if "fid" in r]
    assert [r["step"] for r in fids] == [5, 10]
    assert (run / "checkpoints" / "best.pt").exists()
    st = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert st["best_fid"] == min(r["fid"] for r in fids)
    out = tmp_path / "e.json"
    assert main(["eval", str(run), "--n", "64", "--split", "train", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for k in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
        assert k in res
    assert res["fid"] > 0 and res["step"] == 10
    assert any(c.startswith("pr: precision/recall from 64 samples") for c in res["caveats"])


def test_missing_evaluator_names_the_command(shapes, capsys):
    assert main(["eval", "--real", str(shapes), "--fake", str(shapes), "--n", "10"]) == 2
    err = capsys.readouterr().err
    assert "ganforge evaluator train --data" in err


def test_unknown_metric_and_missing_inputs(capsys):
    assert main(["eval", "--real", "fashion-mnist:train", "--fake", "x", "--metrics", "fid,foo"]) == 2
    assert "foo" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "--real" in capsys.readouterr().err


@pytest.mark.realdata
def test_uniform_noise_scores_far_worse_than_real(tmp_path):
    """Real data: a quick evaluator on 5k images separates test images from uniform noise."""
    require_fashion_mnist()
    from ganforge.metrics.domain.train import train_evaluator
    train_evaluator("fashion-mnist", epochs=1, limit=5000, progress=False)
    noise = (np.random.default_rng(0).random((500, 28, 28)) * 255).astype(np.uint8)
    np.save(tmp_path / "noise.npy", noise)
    floor = evaluate.evaluate_pair("fashion-mnist:train", "fashion-mnist:test", n=500, metrics=["fid"], progress=False)
    bad = evaluate.evaluate_pair("fashion-mnist:train", str(tmp_path / "noise.npy"), n=500, metrics=["fid"], progress=False)
    assert bad["fid"] > 10 * max(floor["fid"], 0.1)
