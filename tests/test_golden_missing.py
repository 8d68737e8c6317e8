"""A clone without the golden data: no collection error, every golden test fails with one clear
message (where the data goes), and the other tests still run."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_golden_data_fails_clearly_and_the_rest_runs(tmp_path):
    env = dict(os.environ, MATRIX_GAME_GOLDEN_DIR=str(tmp_path / "no-golden"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/test_golden_pipeline.py",
                        "tests/test_model.py", "-k", "pipeline or manifest or detect_mode or there_are"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "error" not in out.lower().replace("errors", ""), out            # no collection / setup errors
    summary = out.strip().splitlines()[-1]
    assert "failed" in summary and "passed" in summary and "skipped" not in summary, summary
    assert out.count("golden data not found at " + str(tmp_path / "no-golden")) >= 2, out
    assert "MATRIX_GAME_GOLDEN_DIR" in out and "../shared/golden" in out
