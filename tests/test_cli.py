"""The ``emoq`` command against the test database, bucket and tiny model;
settings come from EMOQ_* variables, as for an operator."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
from sqlalchemy import select

from analysis.engine import resolve_model_source
from domain.api_keys import find_key
from models import Calibration
from ops.cli import main
from tests.conftest import voiced
from tests.factories import key_id
from tests.test_calibration import insert_resolved, synthetic


@pytest.fixture
def reviewed(cli_env, settings, sessions, keys):
    """Resolved reviews of fear and disgust, recorded under the configured model."""
    model_id, _ = resolve_model_source(settings.engine.model)
    data = synthetic({"fearful": 30, "disgusted": 30, "neutral": 10}, seed=11)
    insert_resolved(sessions, key_id(sessions, "submitter"), data, model_id=model_id)


def active_version(sessions) -> int | None:
    with sessions() as session:
        return session.scalar(select(Calibration.version).where(Calibration.active))


def test_calibrate_list_and_activate(reviewed, sessions, capsys):
    assert main(["calibrate"]) == 0
    out = capsys.readouterr().out
    with sessions() as session:
        version = session.scalar(select(Calibration.version))
    assert f"calibration version {version} (nearest_centroid, not active)" in out
    assert "counts: disgusted=30, fearful=30, neutral=10" in out
    assert "held-out fear/disgust accuracy:" in out and "temperature:" in out
    assert active_version(sessions) is None

    assert main(["activate", str(version)]) == 0
    assert main(["calibrate", "--min-per-class", "5", "--activate"]) == 0
    assert active_version(sessions) == version + 1
    capsys.readouterr()
    assert main(["calibrations"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith(f"  v{version} ") and listing[1].startswith(f"* v{version + 1} ")

    assert main(["activate", str(version + 50)]) == 1
    assert f"no calibration version {version + 50}" in capsys.readouterr().err
    assert active_version(sessions) == version + 1


def test_calibrate_refuses_with_exit_code_2_and_keeps_the_active_version(reviewed, sessions, capsys):
    assert main(["calibrate", "--activate"]) == 0
    version = active_version(sessions)
    assert main(["calibrate", "--min-per-class", "31", "--activate"]) == 2
    err = capsys.readouterr().err
    assert "calibration refused" in err and "fearful=30, disgusted=30" in err and "unchanged" in err
    assert main(["calibrate", "--domain", "medical"]) == 2  # no reviews from that domain
    assert active_version(sessions) == version
    with pytest.raises(SystemExit):
        main(["calibrate", "--min-per-class", "2"])
    assert "must be at least 3" in capsys.readouterr().err


def test_evaluate_reviewed_writes_a_report_and_a_heat_map(reviewed, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--reviewed", "--out", str(out)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["source"] == "reviewed" and report["n"] == 70
    assert report["fear_vs_disgust"]["n"] == 60
    assert (out / "confusion.png").read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    assert "items: 70" in printed and "fear vs disgust (n=60)" in printed and "evaluation.json" in printed


def test_evaluate_with_nothing_reviewed_says_so(cli_env, clean_db, tmp_path, capsys):
    assert main(["evaluate", "--reviewed", "--out", str(tmp_path)]) == 1
    assert "nothing to evaluate" in capsys.readouterr().err


def test_calibrate_and_evaluate_from_a_manifest_with_the_tiny_model(cli_env, sessions, clean_db, tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    lines = ["path,label,domain"]
    for i, label in enumerate(["fearful", "disgusted"] * 3):
        sf.write(tmp_path / "clips" / f"{i}.wav", voiced(1.5, seed=i), 16000)
        lines.append(f"clips/{i}.wav,{label},{'medical' if i % 2 else ''}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")

    assert main(["calibrate", "--manifest", str(manifest), "--min-per-class", "3", "--activate"]) == 0
    assert "counts: disgusted=3, fearful=3" in capsys.readouterr().out
    version = active_version(sessions)

    out = tmp_path / "eval"
    assert main(["evaluate", "--manifest", str(manifest), "--out", str(out)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["n"] == 6 and report["calibration_version"] == version
    assert sum(report["enhanced"]["per_class"][label]["support"] for label in report["labels"]) == 6
    assert (out / "confusion.png").is_file()

    manifest.write_text("clips/0.wav,fearful\nclips/9.wav,fearful\n")
    assert main(["evaluate", "--manifest", str(manifest), "--out", str(out)]) == 1
    assert "manifest.csv:2: no such file" in capsys.readouterr().err


def test_create_key_prints_a_working_key_once(cli_env, sessions, clean_db, capsys):
    assert main(["create-key", "--name", "ops", "--role", "reviewer"]) == 0
    captured = capsys.readouterr()
    value = captured.out.strip()
    assert value.startswith("emoq_") and "shown only once" in captured.err
    with sessions() as session:
        key = find_key(session, value)
        assert (key.name, key.role) == ("ops", "reviewer")
