"""Numeric tests for ganforge.metrics: closed forms, invariances, the Inception layout."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.core.registry import RegistryError
from ganforge.metrics import (
    EXTRACTORS,
    METRICS,
    FeatureExtractor,
    FeatureStats,
    FIDInceptionV3,
    compute_metrics,
    extract_features,
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    knn_radii,
    prdc,
)
from ganforge.metrics import inception as inc
from ganforge.metrics.inception import sha256_file
from ganforge.metrics.kid import mmd2_unbiased

# conftest points GANFORGE_CACHE at a temp dir per test; remember the user's real one
# (read at import time, before that fixture runs) for the optional real-weights test.
_USER_CACHE = os.environ.get("GANFORGE_CACHE")


def rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------- FID
def test_fid_diagonal_closed_form():
    r = rng(0)
    d = 16
    mu1, mu2 = r.normal(size=d), r.normal(size=d)
    v1, v2 = r.uniform(0.1, 3, size=d), r.uniform(0.1, 3, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_fid_equal_covariance_is_mean_distance():
    # The pytorch-fid unit test's case: same covariance, FID = ||mu1 - mu2||^2 exactly.
    d = 64
    assert frechet_distance(np.zeros(d), np.eye(d), np.ones(d), np.eye(d)) == pytest.approx(d)


def test_fid_non_diagonal_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    r = rng(1)
    d = 24
    a, b = r.normal(size=(d, d)), r.normal(size=(d, d))
    s1, s2 = a @ a.T / d + 0.1 * np.eye(d), b @ b.T / d + 0.1 * np.eye(d)
    mu1, mu2 = r.normal(size=d), r.normal(size=d)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # symmetric in its arguments
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-9)


def test_fid_of_identical_features_is_zero():
    x = rng(2).normal(size=(500, 32)) * 3 + 5
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-9)
    assert fid_from_features(torch.from_numpy(x).float(), x.astype(np.float32)) < 1e-6


def test_fid_near_singular_covariances_stay_finite():
    # 10 samples in 64 dimensions: covariances of rank 9 (the case where sqrtm goes complex).
    r = rng(3)
    x, y = r.normal(size=(10, 64)), r.normal(size=(10, 64)) + 0.5
    f = fid_from_features(x, y)
    assert isinstance(f, float) and math.isfinite(f) and f > 0
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-9)
    # symmetric up to the conditioning of sqrtm at rank 9 of 64: 1.4e-9 apart on an AMD EPYC's
    # BLAS, < 1e-12 on Intel's; 1e-7 still catches an asymmetric formula (orders larger)
    assert fid_from_features(y, x) == pytest.approx(f, rel=1e-7)
    # rank-1 extreme: both covariances singular and orthogonal
    s1, s2 = np.diag([1.0, 0, 0]), np.diag([0, 4.0, 0])
    assert frechet_distance(np.zeros(3), s1, np.zeros(3), s2) == pytest.approx(5.0)


def test_fid_rejects_bad_inputs():
    d = 4
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(np.zeros(d), -np.eye(d), np.zeros(d), np.eye(d))
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(np.zeros(d), np.triu(np.ones((d, d))), np.zeros(d), np.eye(d))
    with pytest.raises(ValueError, match="mu2"):
        frechet_distance(np.zeros(d), np.eye(d), np.zeros(d + 1), np.eye(d))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full(d, np.nan), np.eye(d), np.zeros(d), np.eye(d))


# ----------------------------------------------------------------------------------- stats
def test_stats_independent_of_batch_size_and_match_numpy():
    x = rng(4).normal(size=(301, 12)) * 2 + 100  # large mean: naive E[xx^T] would cancel
    ref_mu, ref_cov = x.mean(0), np.cov(x, rowvar=False)
    for bs in (1, 7, 64, 301):
        s = FeatureStats()
        for i in range(0, len(x), bs):
            s.update(x[i:i + bs])
        assert s.n == 301
        np.testing.assert_allclose(s.mean, ref_mu, rtol=1e-13)
        np.testing.assert_allclose(s.cov, ref_cov, rtol=1e-10, atol=1e-12)


def test_stats_merge_and_dimension_check():
    x = rng(5).normal(size=(100, 6))
    a, b = FeatureStats.from_features(x[:30]), FeatureStats.from_features(x[30:])
    m = a.merge(b)
    np.testing.assert_allclose(m.cov, np.cov(x, rowvar=False), rtol=1e-12)
    with pytest.raises(ValueError, match="dimension"):
        m.update(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="at least 2"):
        _ = FeatureStats().update(np.zeros((1, 3))).cov


def test_stats_save_load_roundtrip(tmp_path):
    x = rng(6).normal(size=(50, 5))
    s = FeatureStats.from_features(x, meta={"extractor": "inception", "weights_hash": "abc"})
    p = s.save(tmp_path / "ref" / "stats.npz")
    t = FeatureStats.load(p)
    assert t.n == 50 and t.meta == {"extractor": "inception", "weights_hash": "abc"}
    np.testing.assert_array_equal(t.mean, s.mean)
    np.testing.assert_allclose(t.cov, s.cov, rtol=1e-15)
    t.update(x[:3])  # a file with n can keep growing
    # pytorch-fid style file (mu, sigma only): usable for FID, not extendable
    np.savez(tmp_path / "pf.npz", mu=s.mean, sigma=s.cov)
    u = FeatureStats.load(tmp_path / "pf.npz")
    np.testing.assert_array_equal(u.cov, s.cov)
    with pytest.raises(ValueError, match="sample count"):
        u.update(x[:3])
    np.savez(tmp_path / "bad.npz", mean=s.mean)
    with pytest.raises(ValueError, match="missing"):
        FeatureStats.load(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------------- KID
def test_mmd2_unbiased_matches_naive_formula():
    r = rng(7)
    x, y = r.normal(size=(6, 3)), r.normal(size=(6, 3)) + 1
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 6
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
    got = mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y))
    assert got == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)


def test_kid_near_zero_for_same_distribution_and_positive_when_shifted():
    r = rng(8)
    a, b = r.normal(size=(1000, 16)), r.normal(size=(1000, 16))
    mean, std = kernel_inception_distance(a, b, n_subsets=20, subset_size=200, seed=0)
    assert abs(mean) < 3 * std or abs(mean) < 1e-3
    mean2, std2 = kernel_inception_distance(a, b + 1.0, n_subsets=20, subset_size=200, seed=0)
    assert mean2 > 10 * max(std2, abs(mean)) and mean2 > 0.1
    # seeded subsets: reproducible, and subset_size is clamped to the smaller set
    assert kernel_inception_distance(a, b, 5, 200, seed=1) == kernel_inception_distance(
        a, b, 5, 200, seed=1)
    assert math.isfinite(kernel_inception_distance(a[:50], b, 3, 1000)[0])


# -------------------------------------------------------------------------------------- IS
def test_inception_score_bounds():
    n, c = 100, 10
    uniform = np.full((n, c), 1.0 / c)
    assert inception_score(uniform, splits=5) == pytest.approx((1.0, 0.0), abs=1e-12)
    onehot = np.eye(c)[np.arange(n) % c]  # each split of 10 uses every class once
    mean, std = inception_score(onehot, splits=10)
    assert mean == pytest.approx(c, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)
    # logits path agrees with probabilities path
    z = rng(9).normal(size=(40, 7)) * 3
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert inception_score(z, 4, from_logits=True) == pytest.approx(inception_score(p, 4),
                                                                    rel=1e-10)
    with pytest.raises(ValueError, match="from_logits"):
        inception_score(z, 4)


def test_inception_score_splits_as_the_authors_code():
    """Chunk i is rows i*n//s .. (i+1)*n//s (openai/improved-gan), also when s does not divide n."""
    z = rng(9).normal(size=(57, 6)) * 3
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    ref = []
    for i in range(10):
        part = p[i * 57 // 10:(i + 1) * 57 // 10]
        py = part.mean(0, keepdims=True)
        ref.append(np.exp((part * (np.log(part) - np.log(py))).sum(1).mean()))
    assert inception_score(p, 10) == pytest.approx((np.mean(ref), np.std(ref)), rel=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_scores_refuse_nan_and_inf_features(bad):
    x = rng(8).normal(size=(40, 5))
    y = x.copy()
    y[3, 2] = bad
    for call in (lambda: kernel_inception_distance(x, y, n_subsets=2, subset_size=10),
                 lambda: prdc(x, y), lambda: prdc(y, x),
                 lambda: inception_score(y, 2, from_logits=True)):
        with pytest.raises(ValueError, match="NaN or inf"):
            call()


def test_caveats_name_each_unreliable_estimate():
    from ganforge.metrics import caveats
    assert caveats(("fid", "kid", "pr", "dc"), 10_000, 10_000, 2048) == []
    assert caveats(("fid", "kid", "pr", "dc"), 50_000, 10_000, 256, kid_subset_size=1000) == []
    few = caveats(("fid", "kid", "pr", "dc", "hf"), 500, 500, 2048)
    assert [c.split(":")[0] for c in few] == ["fid", "kid", "kid", "pr", "dc"]
    assert "500 samples < 2048 feature dimensions" in few[0]
    assert caveats(("fid",), 5000, 5000, 256) == [
        "fid: 5000 samples < the usual 10,000; FID is biased upward at small n, so compare "
        "only with FIDs of the same n"]
    assert caveats(("kid",), 10_000, 10_000, 256, kid_subsets=1)[0].startswith("kid: every subset")
    assert caveats(("hf", "is"), 2, 2, 2048) == []


# ------------------------------------------------------------------------------------ PRDC
def _prdc_naive(real, fake, k):
    """The reference definitions on full distance matrices: precision/recall with closed balls
    (Kynkäänniemi et al.'s code), density/coverage with open ones (Naeem et al.'s prdc code)."""
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=-1)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=-1)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=-1)  # (N, M)
    r_real = np.sort(d_rr, axis=1)[:, k]
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside = d_rf <= r_real[:, None]
    return {
        "precision": inside.any(0).mean(),
        "recall": (d_rf <= r_fake[None, :]).any(1).mean(),
        "density": (d_rf < r_real[:, None]).sum() / (k * fake.shape[0]),
        "coverage": (d_rf.min(1) < r_real).mean(),
    }


def test_prdc_identical_sets():
    x = rng(10).normal(size=(200, 8))
    r = prdc(x, x, k=3)
    assert r["precision"] == 1.0 and r["recall"] == 1.0 and r["coverage"] == 1.0
    # each real ball holds its centre and k - 1 neighbours strictly inside (the k-th is on the
    # boundary): density = 1, as Naeem et al.'s code gives (it was (k + 1) / k with <=)
    assert r["density"] == pytest.approx(1.0, abs=1e-12)


def test_prdc_disjoint_far_sets():
    x = rng(11).normal(size=(100, 8))
    r = prdc(x, x + 1000.0, k=3)
    assert r == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_subset_on_a_line():
    # real: 0..19 on a line; fake: 0..9. k = 3 -> real radii 3 at the ends, 2 inside;
    # fake radii 3 at 0 and 9, 2 inside. By hand (closed balls):
    #   precision 1 (fake points are real points); recall: reals 0..12 lie in some fake ball
    #   (12 is at distance 3 from fake 9, radius 3) -> 13/20;
    #   coverage (open balls): reals 0..10 have a fake strictly within their own radius
    #   (10: fake 9 at 1 < 2; 11: fake 9 at 2, on the boundary, is not) -> 11/20.
    real = np.arange(20, dtype=np.float64)[:, None]
    fake = real[:10]
    r = prdc(real, fake, k=3)
    assert r["precision"] == 1.0
    assert r["recall"] == pytest.approx(0.65)
    assert r["coverage"] == pytest.approx(0.55)
    assert r["density"] == pytest.approx(_prdc_naive(real, fake, 3)["density"])


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_prdc_chunked_equals_full_matrix(chunk):
    r = rng(12)
    real = r.normal(size=(150, 10))
    fake = r.normal(size=(120, 10)) * 1.3 + 0.3
    ref = _prdc_naive(real, fake, 3)
    got = prdc(torch.from_numpy(real), fake, k=3, chunk_size=chunk)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key
    radii = knn_radii(real, 3, chunk_size=chunk).sqrt().numpy()
    np.testing.assert_allclose(radii, np.sort(np.linalg.norm(real[:, None] - real[None], axis=-1),
                                              axis=1)[:, 3], rtol=1e-9)


# ------------------------------------------------------------------------------- inception
_STEM = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
_BRANCHES = {
    "A": ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2",
          "branch3x3dbl_3", "branch_pool"],
    "B": ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
    "C": ["branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1",
          "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool"],
    "D": ["branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
          "branch7x7x3_4"],
    "E": ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1",
          "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"],
}
_MIXED = {"Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B", "Mixed_6b": "C",
          "Mixed_6c": "C", "Mixed_6d": "C", "Mixed_6e": "C", "Mixed_7a": "D", "Mixed_7b": "E",
          "Mixed_7c": "E"}
_UNIT = ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
         "bn.num_batches_tracked"]


def _pytorch_fid_keys():
    """The key names of pt_inception-2015-12-05-6726825d.pth (torchvision Inception3 layout,
    num_classes=1008, aux_logits=False), written out independently of ganforge's code."""
    units = list(_STEM) + [f"{m}.{b}" for m, t in _MIXED.items() for b in _BRANCHES[t]]
    return {f"{u}.{p}" for u in units for p in _UNIT} | {"fc.weight", "fc.bias"}


@pytest.fixture(scope="module")
def net():
    return FIDInceptionV3(seed=0)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 40, 40, generator=g) * 2 - 1


def test_inception_state_dict_keys(net):
    sd = net.state_dict()
    assert set(sd) == _pytorch_fid_keys() and len(sd) == 566
    assert tuple(sd["Conv2d_1a_3x3.conv.weight"].shape) == (32, 3, 3, 3)
    assert tuple(sd["Mixed_6b.branch7x7_2.conv.weight"].shape) == (128, 128, 1, 7)
    assert tuple(sd["Mixed_7c.branch_pool.conv.weight"].shape) == (192, 2048, 1, 1)
    assert tuple(sd["fc.weight"].shape) == (1008, 2048)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    net.train()
    assert not net.training  # batch-norm statistics can never be switched to training


def test_inception_shapes_determinism_and_fid_patches(net, images):
    f, lg = net.features_and_logits(images)
    assert f.shape == (2, 2048) and lg.shape == (2, 1008) and f.dtype == torch.float32
    assert torch.isfinite(f).all() and (f >= 0).all()  # post-ReLU average
    assert not torch.allclose(f[0], f[1])  # input-dependent
    torch.testing.assert_close(net.features(images), f, rtol=0, atol=0)
    torch.testing.assert_close(lg, f @ net.fc.weight.T)  # default logits: no bias (IS code)
    torch.testing.assert_close(net._head(f, bias=True), lg + net.fc.bias)
    assert FIDInceptionV3(seed=0).weights_hash == net.weights_hash == "random-seed0"
    # FID-specific pooling: count_include_pad=False in A/C/E_1 pools, max pool in E_2
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"
    x = torch.ones(1, 1, 5, 5)
    torch.testing.assert_close(inc._avg_pool_tf(x), x)  # zero padding is not averaged in


def test_inception_grayscale_is_tiled(net):
    g = torch.Generator().manual_seed(1)
    gray = torch.rand(1, 1, 28, 28, generator=g) * 2 - 1
    torch.testing.assert_close(net.features(gray), net.features(gray.repeat(1, 3, 1, 1)))


def test_inception_input_checks(net):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        net.features(torch.full((1, 3, 8, 8), 200.0))
    with pytest.raises(ValueError, match="uint8"):
        net.features(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        net.features(torch.zeros(1, 2, 8, 8))


def test_load_inception_from_file(tmp_path):
    src = FIDInceptionV3(seed=3)
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "custom.pth"
    torch.save(state, path)  # also checks that files without num_batches_tracked load
    with pytest.warns(UserWarning, match="not the standard FID Inception"):
        loaded = inc.load_inception(path)
    assert loaded.weights_hash == sha256_file(path)
    got = loaded.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())
    bad = dict(state)
    bad["Mixed_5b.extra.weight"] = bad.pop("fc.bias")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing keys.*fc.bias.*unexpected"), \
            pytest.warns(UserWarning):
        inc.load_inception(tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        inc.load_inception(tmp_path / "nope.pth")


@pytest.fixture
def no_local_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(inc, "_torch_hub_copy", lambda: None)
    return tmp_path / "cache" / "weights" / inc.WEIGHTS_FILE


def test_missing_weights_offline_gives_clear_error(monkeypatch, tmp_path, no_local_weights):
    # A mirror that does not exist stands in for "no network" (fails at once, no timeout).
    monkeypatch.setenv("GANFORGE_MIRROR_FID_INCEPTION", (tmp_path / "nowhere").as_uri())
    with pytest.raises(RuntimeError) as e:
        EXTRACTORS.build("inception", progress=False)
    msg = str(e.value)
    assert inc.WEIGHTS_FILE in msg and inc.WEIGHTS_URL in msg and "offline" in msg
    assert str(no_local_weights) in msg  # says where to put the file
    assert not no_local_weights.exists()


def test_downloaded_weights_are_sha256_checked(monkeypatch, tmp_path, no_local_weights):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save(FIDInceptionV3(seed=1).state_dict(), mirror / inc.WEIGHTS_FILE)  # wrong bytes
    monkeypatch.setenv("GANFORGE_MIRROR_FID_INCEPTION", mirror.as_uri() + "/")
    with pytest.raises(RuntimeError, match="did not verify"):
        inc.load_inception(progress=False)
    assert not no_local_weights.exists()  # a file that failed the check is never kept
    # A corrupted file already in the cache is reported, not silently used or replaced.
    no_local_weights.parent.mkdir(parents=True)
    no_local_weights.write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupted"):
        inc.load_inception()


def test_weights_hash_constant_follows_file_name_convention():
    # torch.hub convention: the 8 hex digits in the file name prefix the SHA-256.
    assert inc.WEIGHTS_FILE.endswith(f"-{inc.WEIGHTS_SHA256[:8]}.pth")
    assert inc.WEIGHTS_URL.endswith("/" + inc.WEIGHTS_FILE)


def _real_weights_path():
    candidates = [os.environ.get("GANFORGE_INCEPTION_WEIGHTS")]
    if _USER_CACHE:
        candidates.append(str(Path(_USER_CACHE) / "weights" / inc.WEIGHTS_FILE))
    candidates.append(str(Path.home() / ".cache" / "ganforge" / "weights" / inc.WEIGHTS_FILE))
    candidates.append(str(Path(torch.hub.get_dir()) / "checkpoints" / inc.WEIGHTS_FILE))
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def test_real_inception_weights(images):
    path = _real_weights_path()
    if path is None:
        pytest.skip(f"{inc.WEIGHTS_FILE} not present (set GANFORGE_INCEPTION_WEIGHTS to run)")
    # Published facts about the file: size and SHA-256 (see inception.py for sources).
    assert path.stat().st_size == inc.WEIGHTS_BYTES
    assert sha256_file(path) == inc.WEIGHTS_SHA256
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(state) - {k for k in state if k.endswith("num_batches_tracked")} <= \
        _pytorch_fid_keys()
    real = inc.load_inception(path)
    assert real.weights_hash == inc.WEIGHTS_SHA256
    f, lg = real.features_and_logits(images)
    assert f.shape == (2, 2048) and torch.isfinite(f).all() and (f >= 0).all()
    p = torch.softmax(lg.double(), 1)
    assert torch.allclose(p.sum(1), torch.ones(2, dtype=torch.float64))


# --------------------------------------------------------------------- pipeline / entry point
class _TinyExtractor(FeatureExtractor):
    """Fast stand-in with the extractor interface: 4x4 average pool -> flatten."""
    name = "tiny"
    weights_hash = "none"
    feature_dim = 48
    num_classes = 5

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(48, 5)
        self.freeze()

    def features(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(self.prepare(x), 4).flatten(1)

    def logits(self, x):
        return self.head(self.features(x))


def test_extractor_refuses_nan_images():
    x = torch.zeros(2, 3, 16, 16)
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="tiny: images contain 1 NaN or inf"):
        _TinyExtractor().features(x)


def test_extract_features_batching_streaming_and_iterables():
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(23, 3, 16, 16, generator=g) * 2 - 1
    ext = _TinyExtractor()
    full = extract_features(ext, imgs, batch_size=23, with_logits=True)
    assert full.features.shape == (23, 48) and full.logits.shape == (23, 5)
    assert not full.features.requires_grad
    for bs in (1, 5):
        torch.testing.assert_close(extract_features(ext, imgs, bs).features, full.features)
    stats = FeatureStats()
    out = extract_features(ext, imgs, 4, stats=stats, keep=False)
    assert out.features is None and stats.n == 23 and stats.meta["extractor"] == "tiny"
    np.testing.assert_allclose(stats.cov, np.cov(full.features.double().numpy(), rowvar=False),
                               rtol=1e-9, atol=1e-12)
    loader = [(imgs[i:i + 10], torch.zeros(10)) for i in range(0, 23, 10)]
    part = extract_features(ext, loader, max_items=15)
    torch.testing.assert_close(part.features, full.features[:15])


def test_extract_features_with_inception_by_name():
    g = torch.Generator().manual_seed(2)
    out = extract_features(EXTRACTORS.build("inception", pretrained=False),
                           torch.rand(2, 1, 32, 32, generator=g) * 2 - 1, with_logits=True)
    assert out.features.shape == (2, 2048) and out.logits.shape == (2, 1008)


def test_registry_of_extractors():
    assert "inception" in EXTRACTORS.names()
    with pytest.raises(RegistryError, match="inception"):
        EXTRACTORS.build("incepton")


def test_compute_metrics_entry_point(tmp_path):
    r = rng(13)
    real, fake = r.normal(size=(300, 8)), r.normal(size=(200, 8)) + 0.2
    out = compute_metrics(real, fake, seed=0, kid_subsets=10, kid_subset_size=100)
    assert set(out) == {"fid", "kid_mean", "kid_std", "precision", "recall", "density",
                        "coverage"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert out["fid"] == pytest.approx(fid_from_features(real, fake))
    # cached reference statistics replace real features for FID
    FeatureStats.from_features(real).save(tmp_path / "ref.npz")
    ref = FeatureStats.load(tmp_path / "ref.npz")
    only_fid = compute_metrics(None, fake, ["fid"], real_stats=ref)
    assert only_fid == {"fid": pytest.approx(out["fid"], rel=1e-12)}
    # IS joins the defaults when class probabilities are given
    probs = np.eye(4)[np.arange(200) % 4]
    with_is = compute_metrics(real, fake, fake_probs=probs, kid_subsets=2, kid_subset_size=50)
    assert with_is["is_mean"] == pytest.approx(4.0) and set(METRICS) == {"fid", "kid", "pr",
                                                                         "dc", "is", "hf"}
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(real, fake, ["fdi"])
    with pytest.raises(ValueError, match="real_feats"):
        compute_metrics(None, fake, ["kid"])
    with pytest.raises(ValueError, match="fake_probs"):
        compute_metrics(real, fake, ["is"])
