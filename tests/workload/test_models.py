"""Model-profile table: built-in coverage, physical sanity, name resolution, validation, CSV."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from migrator import Geometry
from migrator.errors import ConfigError
from migrator.workload.models import builtin_models, load_models, parse_models

GPUS = {  # the base profiles every built-in model must cover (brief of the table)
    "A100-40GB": ["1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"],
    "A100-80GB": ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
    "H100-80GB": ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
}
MODELS = builtin_models()
NAMES = sorted(MODELS)


def _slices(gpu: str, profile: str) -> int:
    return Geometry.for_gpu(gpu).profile(profile).compute_slices


def test_builtin_loads_with_both_domains():
    assert len(MODELS) >= 6
    assert {m.domain for m in MODELS.values()} == {"vision", "language"}
    assert load_models() == dict(MODELS)
    assert builtin_models() is MODELS  # cached


@pytest.mark.parametrize("name", NAMES)
def test_covers_every_base_profile(name):
    model = MODELS[name]
    assert model.gpus() == sorted(GPUS)
    for gpu, profiles in GPUS.items():
        assert model.profiles(gpu) == sorted(profiles)
        for profile in profiles:
            entry = model.entry(gpu, profile)
            if entry.fits:
                assert model.inference_ms(gpu, profile).shape == (len(model.batch_sizes),)
                assert 0 < model.retrain_speed(gpu, profile) <= 1.5
            assert entry.source


@pytest.mark.parametrize("name", NAMES)
def test_physical_sanity(name):
    model = MODELS[name]
    batch = np.array(model.batch_sizes, dtype=float)
    for gpu, profiles in GPUS.items():
        full = max(profiles, key=lambda p: _slices(gpu, p))
        assert model.retrain_speed(gpu, full) == 1.0
        rows = sorted(((_slices(gpu, p), p) for p in profiles if model.fits(gpu, p)))
        for k, profile in rows:
            t = model.inference_ms(gpu, profile)
            assert np.all(t > 0) and np.all(np.diff(t) >= 0)  # latency non-decreasing in batch
            per_request = t / batch
            assert np.all(np.diff(per_request) <= 0.05 * per_request[:-1])  # cost non-increasing-ish
            if k == 1:  # a 1g slice retrains at about its compute fraction or a bit above
                assert 1 / 7 * 0.9 <= model.retrain_speed(gpu, profile) <= 0.25
        for (k1, p1), (k2, p2) in zip(rows, rows[1:]):
            t1, t2 = model.inference_ms(gpu, p1), model.inference_ms(gpu, p2)
            # smaller slice never has higher throughput at the same batch size
            assert np.all(batch / t1 <= batch / t2 + 1e-9), (gpu, p1, p2)
            if k1 < k2:
                assert model.retrain_speed(gpu, p1) < model.retrain_speed(gpu, p2)
            else:
                assert np.array_equal(t1, t2)


@pytest.mark.parametrize("name", NAMES)
def test_every_figure_marked(name):
    model = MODELS[name]
    derived = sum("derived" in e.source for e in model.entries.values())
    measured = sum(e.source != "derived" for e in model.entries.values())
    assert derived > 0 and measured > 0


def test_variant_and_alias_resolution():
    model = MODELS["resnet50"]
    base = model.inference_ms("A100-40GB", "1g.5gb")
    np.testing.assert_array_equal(model.inference_ms("NVIDIA A100-SXM4-40GB", "MIG 1g.5gb+me"), base)
    assert model.retrain_speed("NVIDIA A100-SXM4-40GB", "MIG 1g.5gb+me") == model.retrain_speed(
        "A100-40GB", "1g.5gb"
    )
    h100 = model.inference_ms("H100-80GB", "1g.10gb")
    np.testing.assert_array_equal(model.inference_ms("H100-80GB", "1g.10gb+me"), h100)
    assert model.fits("A100-80GB", "MIG 7g.80gb")


def test_returned_arrays_are_copies():
    model = MODELS["bert_base"]
    t = model.inference_ms("A100-40GB", "7g.40gb")
    t[:] = 0
    assert np.all(model.inference_ms("A100-40GB", "7g.40gb") > 0)


@pytest.mark.parametrize(
    ("gpu", "profile", "needle"),
    [
        ("A30-24GB", "1g.6gb", "covers: A100-40GB, A100-80GB, H100-80GB"),
        ("V100", "1g.5gb", "unknown GPU 'V100'"),
        ("A100-40GB", "5g.30gb", "profiles: 1g.10gb, 1g.5gb"),
    ],
    ids=["gpu-not-covered", "gpu-unknown", "profile-unknown"],
)
def test_lookup_errors_name_what_is_known(gpu, profile, needle):
    with pytest.raises(ConfigError) as err:
        MODELS["resnet50"].inference_ms(gpu, profile)
    assert needle in str(err.value)
    assert err.value.field in ("gpu", "profile")


# -- bad YAML inputs ----------------------------------------------------------------------


def _good() -> dict:
    return {
        "version": 1,
        "models": [
            {
                "name": "tiny",
                "task": "test",
                "domain": "vision",
                "params_m": 1.0,
                "precision": "fp16",
                "batch_sizes": [1, 2],
                "sources": [{"id": "paper", "cite": "A paper, https://example.org"}],
                "gpus": {
                    "A100-40GB": {
                        "7g.40gb": {"inference_ms": [1.0, 1.5], "retrain_speed": 1.0, "source": "paper"},
                        "3g.20gb": {"inference_ms": [2.0, 3.0], "retrain_speed": 0.5, "source": "derived"},
                        "1g.5gb": {"fits": False, "source": "paper"},
                    }
                },
            }
        ],
    }


def _set(path: str, value):
    def edit(table):
        node = table
        keys = path.split("/")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
        return table

    return edit


_DELETE = object()
_P = "models/0/gpus/A100-40GB/3g.20gb"
BAD = [
    ("version", _set("version", 2), "version"),
    ("top-unknown", _set("extra", 1), "extra"),
    ("model-unknown", _set("models/0/colour", "red"), "models[0].colour"),
    ("missing-task", _set("models/0/task", _DELETE), "models[0].task"),
    ("name-case", _set("models/0/name", "ResNet"), "models[0].name"),
    ("domain", _set("models/0/domain", "audio"), "models[0].domain"),
    ("precision", _set("models/0/precision", "fp64"), "models[0].precision"),
    ("params", _set("models/0/params_m", -3), "models[0].params_m"),
    ("params-huge", _set("models/0/params_m", 10**400), "models[0].params_m"),  # was an OverflowError
    ("params-nan", _set("models/0/params_m", float("nan")), "models[0].params_m"),
    ("speed-huge", _set(f"{_P}/retrain_speed", 10**400), "models[0].gpus.A100-40GB.3g.20gb.retrain_speed"),
    ("batch-order", _set("models/0/batch_sizes", [2, 1]), "models[0].batch_sizes"),
    ("batch-type", _set("models/0/batch_sizes", [1, "2"]), "models[0].batch_sizes"),
    ("source-key", _set("models/0/sources/0/url", "x"), "models[0].sources[0].url"),
    ("gpu", _set("models/0/gpus/V100", {}), "models[0].gpus.V100"),
    ("profile", _set("models/0/gpus/A100-40GB/5g.30gb", {}), "models[0].gpus.A100-40GB.5g.30gb"),
    ("variant-twice", _set("models/0/gpus/A100-40GB/1g.5gb+me", {"fits": False, "source": "paper"}),
     "models[0].gpus.A100-40GB.1g.5gb+me"),
    ("entry-unknown", _set(f"{_P}/memory_mib", 5), "models[0].gpus.A100-40GB.3g.20gb.memory_mib"),
    ("length", _set(f"{_P}/inference_ms", [2.0]), "models[0].gpus.A100-40GB.3g.20gb.inference_ms"),
    ("negative", _set(f"{_P}/inference_ms", [-1.0, 3.0]), "models[0].gpus.A100-40GB.3g.20gb.inference_ms"),
    ("decreasing", _set(f"{_P}/inference_ms", [3.0, 2.0]), "models[0].gpus.A100-40GB.3g.20gb.inference_ms"),
    ("text", _set(f"{_P}/inference_ms", ["fast", 2.0]), "models[0].gpus.A100-40GB.3g.20gb.inference_ms"),
    ("speed-high", _set(f"{_P}/retrain_speed", 2.0), "models[0].gpus.A100-40GB.3g.20gb.retrain_speed"),
    ("speed-zero", _set(f"{_P}/retrain_speed", 0), "models[0].gpus.A100-40GB.3g.20gb.retrain_speed"),
    ("no-speed", _set(f"{_P}/retrain_speed", _DELETE), "models[0].gpus.A100-40GB.3g.20gb.retrain_speed"),
    ("source-id", _set(f"{_P}/source", "nowhere"), "models[0].gpus.A100-40GB.3g.20gb.source"),
    ("fits-type", _set(f"{_P}/fits", "yes"), "models[0].gpus.A100-40GB.3g.20gb.fits"),
    ("fits-with-figures", _set("models/0/gpus/A100-40GB/1g.5gb/retrain_speed", 0.1),
     "models[0].gpus.A100-40GB.1g.5gb.retrain_speed"),
    ("slice-faster", _set(f"{_P}/inference_ms", [0.5, 1.0]), "models[0].gpus.A100-40GB.3g.20gb.inference_ms"),
    ("slice-retrains-faster", _set(f"{_P}/retrain_speed", 1.2), "models[0].gpus.A100-40GB.3g.20gb.retrain_speed"),
]


def test_good_table_parses():
    model = parse_models(_good())["tiny"]
    assert not model.fits("A100-40GB", "MIG 1g.5gb+me")
    with pytest.raises(ConfigError, match="does not fit"):
        model.inference_ms("A100-40GB", "1g.5gb")
    assert model.retrain_speed("A100-40GB", "3g.20gb") == 0.5


@pytest.mark.parametrize(("edit", "field"), [(e, f) for _, e, f in BAD], ids=[i for i, _, _ in BAD])
def test_bad_yaml_names_field(tmp_path: Path, edit, field):
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(edit(copy.deepcopy(_good()))), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_models(path)
    assert err.value.field == field
    assert str(err.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path):
    with pytest.raises(ConfigError):
        load_models(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_models(bad)


def test_allowed_values_in_message():
    table = _set("models/0/domain", "audio")(_good())
    with pytest.raises(ConfigError, match=re.escape("vision, language")):
        parse_models(table)


# -- CSV user tables ----------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path):
    original = MODELS["distilbert"]
    lines = ["model,gpu,profile,batch_size,inference_ms,retrain_speed"]
    for gpu in original.gpus():
        for profile in original.profiles(gpu):
            times = original.inference_ms(gpu, profile)
            for b, t in zip(original.batch_sizes, times):
                lines.append(f"distilbert,{gpu},{profile},{b},{float(t)!r},{original.retrain_speed(gpu, profile)!r}")
    lines.append("huge,NVIDIA A100-SXM4-40GB,7g.40gb,1,10.0,1.0")
    lines.append("huge,NVIDIA A100-SXM4-40GB,MIG 1g.5gb,1,,")
    path = tmp_path / "user.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = load_models(path)
    copy_ = loaded["distilbert"]
    assert copy_.batch_sizes == original.batch_sizes
    for gpu in original.gpus():
        assert copy_.profiles(gpu) == original.profiles(gpu)
        for profile in original.profiles(gpu):
            np.testing.assert_array_equal(copy_.inference_ms(gpu, profile), original.inference_ms(gpu, profile))
            assert copy_.retrain_speed(gpu, profile) == original.retrain_speed(gpu, profile)
    assert not loaded["huge"].fits("A100-40GB", "1g.5gb")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("model,gpu,profile\nx,A100-40GB,7g.40gb\n", "columns"),
        ("model,gpu,profile,batch_size,inference_ms,retrain_speed\nx,A100-40GB,7g.40gb,one,1,1\n", "row 2.batch_size"),
        (
            "model,gpu,profile,batch_size,inference_ms,retrain_speed\n"
            "x,A100-40GB,7g.40gb,1,1,1\nx,A100-40GB,7g.40gb,2,0.5,1\n",
            "models[0].gpus.A100-40GB.7g.40gb.inference_ms",
        ),
        (
            "model,gpu,profile,batch_size,inference_ms,retrain_speed\n"
            "x,A100-40GB,7g.40gb,1,1,1\nx,A100-40GB,3g.20gb,2,3,0.5\n",
            "batch_size",
        ),
    ],
    ids=["columns", "batch-not-int", "decreasing", "missing-batch"],
)
def test_bad_csv(tmp_path: Path, text, field):
    path = tmp_path / "user.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_models(path)
    assert err.value.field == field
