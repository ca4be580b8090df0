"""``python -m atelier bench``: a short smoke run (no timing assertion), and the parts that need no server."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from atelier.bench import Measure, format_table, multipart_body, sample_jpeg, summarize

KEYS = ("ceiling_rps", "naive_rps", "predict_rps", "p50_ms", "p99_ms")


def test_multipart_body_is_a_valid_upload():
    from starlette.formparsers import MultiPartParser  # noqa: F401  (parsed for real in the smoke run)

    body, content_type = multipart_body(sample_jpeg())
    boundary = content_type.split("boundary=")[1]
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'name="file"' in body and b"\xff\xd8" in body  # the JPEG marker


def test_summary_and_table_from_measures():
    measures = [
        Measure(target, c, rps, 2.0 * c, 5.0 * c, int(rps * 5), 0)
        for target, base in (("ceiling", 1000.0), ("naive", 10.0), ("predict", 500.0))
        for c, rps in ((1, base / 2), (8, base), (32, base))
    ]
    summary = summarize(measures, generator="wrk", duration=5, model="m.keras")
    assert summary["ceiling_rps"] == 1000 and summary["naive_rps"] == 10 and summary["predict_rps"] == 500
    assert summary["p50_ms"] == 16 and summary["p99_ms"] == 40 and summary["connections"] == 8
    assert summary["targets"] == {
        "predict_vs_ceiling >= 0.4": True,
        "predict_vs_naive >= 20": True,
        "p99_ms <= 50": True,
    }
    table = format_table(summary)
    assert "plafond (GET /health)" in table and "API naïve" in table and "vraie API (POST /predict)" in table
    assert "/predict = 50\u202f% du plafond (objectif ≥ 40\u202f% : atteint)" in table
    assert "50,0 × l'API naïve (objectif ≥ 20,0 × : atteint)" in table
    assert "p99 = 40,0 ms (objectif ≤ 50,0 ms : atteint)" in table

    slow = summarize(
        [Measure(m.target, m.connections, m.rps, m.p50_ms, 60.0, m.requests, 0) for m in measures],
        generator="wrk",
        duration=5,
        model="m.keras",
    )
    assert slow["targets"]["p99_ms <= 50"] is False and "(objectif ≤ 50,0 ms : non atteint)" in format_table(slow)
    json.dumps(summary)  # JSON-able
    assert summary["explain_ms"] is None and "explication" not in table  # not measured: not invented

    explained = summarize(
        [*measures, Measure("explain", 1, 20.0, 48.0, 60.0, 100, 0)], generator="wrk", duration=5, model="m.keras"
    )
    assert explained["explain_ms"] == 48 and explained["explain_vs_predict"] == 24  # predict p50 at c=1: 2 ms
    explained_table = format_table(explained)
    assert "explication (POST /explain)" in explained_table
    assert (
        "Une explication (Grad-CAM, une à la fois) : 48,0 ms (p50), 24,0 fois une prédiction seule" in explained_table
    )


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["python", "auto"])
def test_bench_smoke_run(saved_model, generator):
    path, _ = saved_model
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "atelier",
            "bench",
            "--model",
            str(path),
            "--duration",
            "1",
            "--warmup",
            "0.5",
            "--connections",
            "1,4",
            "--generator",
            generator,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in KEYS:
        assert isinstance(summary[key], (int, float)) and summary[key] > 0 and math.isfinite(summary[key]), key
    assert summary["connections"] == 4  # the level closest to 8 among those measured
    assert summary["errors"] == 0
    table = "\n".join(lines[:-1])
    assert "cible" in table and "req/s" in table and "p99 (ms)" in table
    for label in ("plafond (GET /health)", "API naïve (model.predict)", "vraie API (POST /predict)"):
        assert table.count(label) == 2, label  # one row per concurrency level
    assert table.count("explication (POST /explain)") == 1  # one level: explanations run one at a time
    assert summary["explain_ms"] > 0 and summary["explain_vs_predict"] > 0
    assert "Traceback" not in result.stderr


def test_bench_missing_model_is_a_french_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "atelier", "bench", "--model", str(tmp_path / "absent.keras")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Modèle introuvable" in result.stderr and "Traceback" not in result.stderr
