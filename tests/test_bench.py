"""``python -m atelier bench``: a short smoke run (no timing assertion), and the summary (bound, levels, peers)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest

from atelier.bench import Measure, errors_text, format_table, median_measure, multipart_body, sample_jpeg, summarize


def test_multipart_body_is_a_valid_upload():
    from starlette.formparsers import MultiPartParser  # noqa: F401  (parsed for real in the smoke run)

    body, content_type = multipart_body(sample_jpeg())
    boundary = content_type.split("boundary=")[1]
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'name="file"' in body and b"\xff\xd8" in body  # the JPEG marker


def _measures(predict_p99: float = 5.0) -> list[Measure]:
    measures = [
        Measure("health", c, rps, 1.0, 2.0, int(rps * 5), 0) for c, rps in ((1, 500.0), (8, 1000.0), (32, 900.0))
    ]
    measures += [
        Measure("predict", c, rps, c / 8, predict_p99 * c / 8, int(rps * 5), 0)
        for c, rps in ((1, 300.0), (8, 400.0), (32, 450.0))
    ]
    return [*measures, Measure("naive", 8, 10.0, 800.0, 900.0, 50, 0)]


def test_summary_and_table_from_measures():
    summary = summarize(_measures(), compute_rps=1000.0, batch_size=16, generator="wrk", duration=5, model="m.keras")
    # the bound: 1 / (1/compute + 1/best trivial route) = 1 / (1/1000 + 1/1000)
    assert summary["bound_rps"] == 500 and summary["compute_rps"] == 1000 and summary["health_rps"] == 1000
    assert summary["predict_rps"] == {"1": 300, "8": 400, "32": 450}
    assert summary["p99_ms"] == {"1": 0.62, "8": 5, "32": 20} and summary["p50_ms"]["1"] == 0.12
    assert summary["vs_bound"] == {"1": 0.6, "8": 0.8, "32": 0.9}
    assert summary["naive_rps"] == 10 and summary["predict_vs_naive"] == 40 and summary["connections"] == 8
    assert summary["targets"] == {
        "vs_bound@8 >= 0.7": True,
        "p99_ms@8 <= 25": True,
        "p99_ms@32 <= 60": True,
        "p50_ms@1 <= 3": True,
        "predict_vs_naive >= 20": True,
    }  # no LitServe measured: its objectives are left out, not counted as met
    table = format_table(summary)
    for label in ("route triviale (GET /health)", "API naïve", "vraie API (POST /predict)"):
        assert label in table
    assert "c=8 : /predict = 80\u202f% de la borne (objectif ≥ 70\u202f% : atteint)" in table
    assert "c=32 : p99 = 20,0 ms (objectif ≤ 60,0 ms : atteint)" in table
    assert "borne 1 / (1/calcul + 1/triviale) = 500 req/s" in table

    slow = summarize(
        _measures(predict_p99=30.0), compute_rps=1000.0, batch_size=16, generator="wrk", duration=5, model="m"
    )
    assert slow["targets"]["p99_ms@8 <= 25"] is False and slow["targets"]["p99_ms@32 <= 60"] is False
    assert "c=8 : p99 = 30,0 ms (objectif ≤ 25,0 ms : non atteint)" in format_table(slow)
    json.dumps(summary)  # JSON-able
    assert summary["explain_ms"] is None and "explication" not in table  # not measured: not invented

    explained = summarize(
        [*_measures(), Measure("explain", 1, 20.0, 48.0, 60.0, 100, 0)],
        compute_rps=1000.0,
        batch_size=16,
        generator="wrk",
        duration=5,
        model="m",
    )
    assert explained["explain_ms"] == 48 and explained["explain_vs_predict"] == 384  # predict p50 at c=1: 0.125 ms
    explained_table = format_table(explained)
    assert "explication (POST /explain)" in explained_table
    assert (
        "Une explication (Grad-CAM, une à la fois) : 48,0 ms (p50), 384,0 fois une prédiction seule" in explained_table
    )


def test_the_peer_is_compared_level_by_level():
    measures = _measures() + [Measure("litserve", c, 200.0, 2.0, 9.0, 1000, 0) for c in (1, 8, 32)]
    summary = summarize(measures, compute_rps=1000.0, batch_size=16, generator="wrk", duration=5, model="m")
    assert summary["litserve_rps"] == {"1": 200, "8": 200, "32": 200}
    assert summary["vs_litserve"] == {"1": 1.5, "8": 2.0, "32": 2.25}
    assert summary["targets"]["vs_litserve@8 >= 1.5"] and summary["targets"]["vs_litserve@32 >= 1.5"]
    assert "LitServe (--peers)" in format_table(summary)
    failing = [*_measures(), *(Measure("litserve", c, 900.0, 1.0, 2.0, 4500, 4500) for c in (8, 32))]
    broken = summarize(failing, compute_rps=1000.0, batch_size=16, generator="wrk", duration=5, model="m")
    assert "vs_litserve" not in broken and not any("litserve" in name for name in broken["targets"])


def test_repeated_measures_give_medians_and_error_kinds():
    runs = [
        Measure("predict", 32, rps, p50, p99, requests, errors, statuses=kinds, server_cpu_ms=cpu, runs=[rps])
        for rps, p50, p99, requests, errors, kinds, cpu in (
            (800.0, 30.0, 50.0, 4000, 0, {}, 1.0),
            (700.0, 40.0, 90.0, 3500, 5, {"503": 5}, 1.4),
            (900.0, 35.0, 60.0, 4500, 2, {"503": 1, "timeout": 1}, 1.1),
        )
    ]
    median = median_measure(runs)
    assert (median.rps, median.p50_ms, median.p99_ms, median.server_cpu_ms) == (800, 35, 60, 1.1)
    assert median.requests == 12000 and median.errors == 7 and median.runs == [800, 700, 900]  # in running order
    assert median.statuses == {"503": 6, "timeout": 1}
    assert errors_text(median) == "7 (503 × 6, timeout × 1)" and errors_text(runs[0]) == "0"

    measures = [m for m in _measures() if m.connections != 32 or m.target != "predict"] + [median]
    summary = summarize(measures, compute_rps=1000.0, batch_size=16, generator="wrk", duration=5, model="m", repeat=3)
    assert summary["repeat"] == 3 and summary["errors"] == 7 and summary["error_statuses"] == {"503": 6, "timeout": 1}
    assert summary["predict_rps"]["32"] == 800 and summary["server_cpu_ms"] == {"32": 1.1}
    json.loads(json.dumps(summary))
    table = format_table(summary)
    assert "7 (503 × 6, timeout × 1)" in table and "médiane de 3 mesures" in table
    assert "Attention : 7 requêtes en erreur pendant les mesures (503 × 6, timeout × 1" in table


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["python", "auto"])
def test_bench_smoke_run(saved_model, generator):
    """With wrk, two rounds 1 → 4 → 32 → 1 → 4 → 32: the requests a finished level leaves in the server (wrk closes
    its connections, their computation goes on) must be done before the next level starts, else the load
    shedding (32 in flight by default) answers 503 at 32 connections or just after (measured)."""
    path, _ = saved_model
    wrk = generator == "auto" and shutil.which("wrk") is not None
    levels = "1,4,32" if wrk else "1,4"
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
            levels,
            "--generator",
            generator,
            *(["--repeat", "2"] if wrk else []),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in ("bound_rps", "compute_rps", "health_rps", "naive_rps", "predict_vs_naive"):
        assert isinstance(summary[key], (int, float)) and summary[key] > 0 and math.isfinite(summary[key]), key
    for key in ("predict_rps", "p50_ms", "p99_ms", "vs_bound"):  # one value per concurrency level
        assert set(summary[key]) == set(levels.split(",")), key
        assert all(v > 0 and math.isfinite(v) for v in summary[key].values()), key
    assert summary["connections"] == 4  # the level closest to 8 among those measured
    assert summary["errors"] == 0 and summary["error_statuses"] == {}, summary["error_statuses"]
    assert summary["repeat"] == (2 if wrk else 1)
    if sys.platform.startswith("linux"):  # the server's processor time per request, read in /proc
        assert all(0 < v < 1000 for v in summary["server_cpu_ms"].values()), summary["server_cpu_ms"]
    table = "\n".join(lines[:-1])
    assert "cible" in table and "req/s" in table and "p99 (ms)" in table and "/ borne" in table
    for label in ("route triviale (GET /health)", "vraie API (POST /predict)"):
        assert table.count(label) == len(levels.split(",")), label  # one row per concurrency level
    assert table.count("API naïve (model.predict)") == 1  # the naive API at the headline level only
    # The bound is computed by the runtime serve uses (TensorFlow Lite by default), and says so.
    assert "Calcul seul (load_image + réseau tflite, lots de 16)" in table and summary["runtime"] == "tflite"
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


def test_litserve_peer_sees_a_real_request_annotation():
    """LitServe reads ``decode_request``'s annotation at run time to decide whether to parse the form: with
    postponed annotations (``from __future__ import annotations``) it sees the string ``"Request"``, passes
    the raw Starlette request to its queue and every peer request fails with a 500 (measured)."""
    import ast
    from pathlib import Path

    import atelier

    source = (Path(atelier.__file__).parent / "bench_litserve.py").read_text(encoding="utf-8")
    future = [
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module == "__future__"
        for alias in node.names
    ]
    assert "annotations" not in future
