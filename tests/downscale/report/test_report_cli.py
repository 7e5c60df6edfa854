"""End to end through the CLI: evaluate a tiny ensemble store, render the report, check its content."""

from __future__ import annotations

import base64
import io
import json
import re
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
import xarray as xr

from downscale.cli import main
from downscale.evaluation.evaluate import evaluate
from downscale.evaluation.results import DIAGNOSTIC_FILES, is_complete, read_diagnostics
from downscale.version import __version__
from report_helpers import FACTOR, K, NT, PROVENANCE, WINDOW

EXPECTED_FIGURES = {
    "annual-mean", "annual-bias", "annual-percent-bias", "seasonal-mean", "seasonal-bias", "zoom-california",
    "zoom-himalayas", "histogram", "qq", "wet-days", "dry-spells", "return-levels-california",
    "return-levels-himalayas", "power-spectrum", "autocorrelation", "diurnal-cycle", "rank-histogram", "reliability",
    "annual-max-daily",
}


@pytest.fixture(scope="module")
def page(report_run) -> str:
    return report_run.html.read_text(encoding="utf-8")


def test_diagnostics_folder(report_run):
    assert is_complete(report_run.diagnostics)
    assert sorted(p.name for p in report_run.diagnostics.iterdir()) == sorted(DIAGNOSTIC_FILES)
    diags = read_diagnostics(report_run.diagnostics)
    assert diags.config["factor"] == FACTOR and diags.config["n_boot"] == 20
    assert diags.config["window_joins"] == list(range(WINDOW, NT, WINDOW))   # from the store's attribute
    assert diags.evaluation["factor_from"] == "store attribute"
    assert diags.evaluation["n_members"] == K and diags.evaluation["n_times"] == NT
    assert diags.evaluation["store_attrs"]["downscale_status"] == "complete"      # the writer's bookkeeping
    assert list(diags.scalars.source.values) == ["ensemble", "ensemble_raw", "bilinear", "deterministic", "coarse",
                                                 "truth"]
    assert list(diags.scalars.source_kind.values) == ["ensemble", "ensemble", "baseline", "baseline", "coarse",
                                                      "truth"]
    assert np.isnan(float(diags.scalars.spread_skill.sel(source="bilinear", region="global")))   # null → NaN
    assert "metrics" in report_run.stdout and "report:" in report_run.stdout


def test_every_expected_figure_is_embedded(page):
    listed = set(re.search(r'<body data-figures="([^"]*)"', page).group(1).split())
    assert listed == EXPECTED_FIGURES
    for name in EXPECTED_FIGURES:
        block = re.search(rf'<figure id="fig-{name}" data-figure="{name}"><img alt="[^"]*" '
                          r'src="data:image/png;base64,([^"]+)"><figcaption>(.+?)</figcaption></figure>', page)
        assert block, name
        image = mpimg.imread(io.BytesIO(base64.b64decode(block.group(1))), format="png")
        assert image.ndim == 3 and min(image.shape[:2]) > 100, name
        assert image[..., :3].std() > 0.05, f"figure {name} is blank"
        assert len(block.group(2)) > 20


def test_summary_first_offline_and_sane_size(page):
    sections = re.findall(r'<section id="([^"]+)"', page)
    assert sections[0] == "summary" and sections[-1] == "provenance"
    assert page.index('id="table-summary"') < page.index("<figure")
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', page)
    assert "<script" not in page and "<link" not in page
    assert len(page.encode()) < 6_000_000


def test_summary_table_units_ratios_and_targets(page, report_run):
    summary = page[page.index('id="table-summary"'):page.index("</table>", page.index('id="table-summary"'))]
    for text in ("fair CRPS (K−1 estimator, estimates an infinite ensemble)", "standard CRPS (this K-member "
                 "ensemble)", "fair CRPS / best baseline", "standard CRPS / best baseline", "mm/day", "≤ 0.75",
                 "≤ 0.85", "0.8 – 1.2", "|·| ≤ 10 % (raw ensemble)", "spread–skill ratio", "seam ratio",
                 "mass consistency",
                 "PE: |Δ 99.999th percentile|", "EMD", "SAE", "Brier score: rate above the truth&#x27;s 99th",
                 "q99.9 / q99.99 inside the truth&#x27;s 95 % interval"):
        assert text in summary, text
    assert "<td>CRPS</td>" not in summary                          # no unlabelled CRPS
    assert re.search(r'class="(pass|miss)"', summary)
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", summary).group(1)
    assert re.findall(r"<th>([^<]+)</th>", header)[3:] == ["ensemble", "ensemble_raw", "bilinear", "deterministic",
                                                          "coarse"]
    inside = re.search(r"q99.9 / q99.99 inside the truth&#x27;s 95 % interval</td>(.*?)</tr>", summary).group(1)
    scalars = read_diagnostics(report_run.diagnostics).scalars.sel(region="global")
    expected = [" / ".join("yes" if bool(scalars[f"{t}_in_truth_interval"].sel(source=s)) else "no"
                           for t in ("q999", "q9999")) for s in ("ensemble", "ensemble_raw", "bilinear",
                                                                 "deterministic", "coarse")]
    assert re.findall(r"<td>([^<]*)</td>", inside)[2:] == expected
    assert expected[1] == "no / no"                                 # raw = 1.1 x members: a heavier tail
    assert 'id="table-exceedance"' in page and "&gt; 10 mm/day" in page


def test_heavy_rain_section(page):
    section = page[page.index('<section id="heavy-rain"'):]
    section = section[:section.index("</section>")]
    for table in ("table-extreme-quantiles", "table-region-brier_q99", "table-region-brier_q999"):
        assert f'id="{table}"' in section, table
    assert "bootstrap over whole days" in section and "n/s" in section
    assert "Not supported by the truth&#x27;s sample: global 99.999" in section    # 147 456 values: 1.5 above
    regional = page[page.index('<section id="regional"'):]
    assert 'id="table-region-crps_fair"' in regional and 'id="table-region-crps_standard"' in regional


def test_provenance(page, report_run):
    prov = page[page.index('<section id="provenance"'):]
    for key, value in PROVENANCE.items():
        assert f"<td>{key}</td><td>{value}</td>" in prov
    assert "pe_quantile" in prov and "tail_quantile" in prov          # the CompareConfig
    assert "generated_at" in prov and f"<td>software_version</td><td>{__version__}</td>" in prov
    assert str(report_run.store) in prov


def _err(capsys) -> str:
    return capsys.readouterr().err.strip()


def test_refuses_to_overwrite(report_run, capsys):
    assert main(["evaluate", "--output", str(report_run.store), "--diagnostics", str(report_run.diagnostics)]) == 2
    assert re.search(r"diagnostics .* already holds a complete evaluation: pass --overwrite", _err(capsys))
    assert main(["report", "--diagnostics", str(report_run.diagnostics), "--output", str(report_run.store),
                 "--html", str(report_run.html)]) == 2
    assert "exists" in _err(capsys)


@pytest.fixture(scope="module")
def bad_stores(report_run, tmp_path_factory) -> dict:
    """Short copies of the store: without the truth, without the factor attribute."""
    root = tmp_path_factory.mktemp("bad")
    ds = xr.open_zarr(report_run.store).isel(time=slice(0, 16))           # consolidated by the writer
    no_truth = ds.drop_vars("PRATEsfc_truth")
    no_factor = ds.copy()
    no_factor.attrs = {k: v for k, v in ds.attrs.items() if k != "factor"} | {"window_joins": "[8]"}
    paths = {"no_truth": root / "no_truth.zarr", "no_factor": root / "no_factor.zarr"}
    for key, d in (("no_truth", no_truth), ("no_factor", no_factor)):
        for v in d.variables.values():
            v.encoding.clear()
        d.to_zarr(paths[key], zarr_format=3, consolidated=False)
    return paths


def test_bad_input_exits_2_with_one_clear_line(bad_stores, tmp_path, capsys):
    cases = [
        (["evaluate", "--output", str(tmp_path / "nowhere.zarr"), "--diagnostics", str(tmp_path / "d1")],
         "output store .*nowhere.zarr not found"),
        (["evaluate", "--output", str(bad_stores["no_truth"]), "--diagnostics", str(tmp_path / "d2")],
         "no_truth.zarr: no truth variable 'PRATEsfc_truth'"),
        (["evaluate", "--output", str(bad_stores["no_factor"]), "--diagnostics", str(tmp_path / "d3")],
         "no_factor.zarr has no global attribute 'factor'.*--factor"),
        (["evaluate", "--output", str(bad_stores["no_truth"]), "--diagnostics", str(tmp_path / "d4"),
          "--factor", "4"], "conflicting scale factors store attribute 2, argument 4"),
        (["report", "--diagnostics", str(tmp_path / "d1"), "--output", str(bad_stores["no_factor"]),
          "--html", str(tmp_path / "r.html")], "diagnostics folder .*d1 lacks metrics.json"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = _err(capsys)
        assert err.startswith("error: ") and err.count("\n") == 0, err
        assert re.search(message, err), (message, err)
    assert not any(tmp_path.glob("d*")), "a failed evaluation left a folder behind"


def test_factor_argument_and_crash_leaves_no_folder(bad_stores, tmp_path, monkeypatch):
    module = sys.modules["downscale.evaluation.evaluate"]
    results = []

    def remember(ds, config, land_fraction=None, **blocks):
        results.append(real_compare(ds, config, land_fraction, **blocks))
        return results[-1]
    real_compare = module.compare
    monkeypatch.setattr(module, "compare", remember)
    out = evaluate(bad_stores["no_factor"], tmp_path / "diag", factor=FACTOR, n_boot=5)
    assert json.loads(out["evaluation"].read_text())["factor_from"] == "argument"

    def crash(result, out_dir):
        (out_dir / "metrics.json").write_text("{}")
        raise RuntimeError("disk full")
    monkeypatch.setattr(module, "compare", lambda ds, config, land_fraction=None, **blocks: results[0])
    monkeypatch.setattr(module, "write_comparison", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        evaluate(bad_stores["no_factor"], tmp_path / "crashed", factor=FACTOR, n_boot=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diag"]        # no half folder, no temp left
