import numpy as np
import pandas as pd
from matplotlib import image

from irrepprobe.capture import load_capture
from irrepprobe.cli import main
from irrepprobe.study import make_report


def test_report_renders_with_every_figure_and_table(report):
    out = report["out"]
    for name in ("utilisation_heatmap", "probe_heatmap", "latent_maps", "cka"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (out / "figures" / f"{name}.svg").exists()
    img = image.imread(out / "figures" / "utilisation_heatmap.png")
    assert 300 < img.shape[0] < 4000 and 600 < img.shape[1] < 6000
    assert img[..., :3].std() > 0.05  # not a blank canvas
    for name in ("norms", "utilisation", "probes", "probes_equivariant", "latent_knn", "cka", "verdict"):
        assert (out / "tables" / f"{name}.csv").exists()
    md = (out / "report.md").read_text()
    assert "## Summary" in md and "<summary>Verdict in detail</summary>" in md
    assert "figures/utilisation_heatmap.png" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert (out / "control" / "capture" / "meta.json").exists()


def test_the_first_screen_holds_the_answer_and_the_tables_are_folded(report):
    md = (report["out"] / "report.md").read_text()
    first = md.split("<details>")[0]  # everything a reader sees before opening anything
    assert "## Summary" in first and "figures/utilisation_heatmap.png" in first
    for order in ("l=1", "l=2"):  # each order with its outcome and the leg it rests on
        line = next(x for x in first.splitlines() if x.startswith(f"- **{order}:"))
        assert any(o in line for o in ("needed", "dispensable", "undecided")) and "dependence" in line
    assert "**A pruning step would drop**" in first and "**How sure**" in first
    assert "within this one model" in first  # a single checkpoint's intervals say what they are
    # an unreachable block that holds information is named as held, never used
    held = next(x for x in first.splitlines() if x.startswith("- **Information held is not use**"))
    assert "layers.2 1o" not in held or "never used" in held
    assert "| point | block |" not in first  # the detailed tables are folded away
    assert md.count("<details>") == md.count("</details>") >= 5
    html = (report["out"] / "report.html").read_text()
    assert html.count("<details>") == html.count("</details>") >= 5
    assert html.index("Summary") < html.index("<details>")


def test_the_chemiscope_export_holds_every_structure_and_atom(report):
    import gzip
    import json

    path = report["out"] / "chemiscope.json.gz"
    data = json.load(gzip.open(path))  # what chemiscope's viewer reads
    n = len(data["structures"])
    cap = load_capture(report["out"].parent / "cap")
    assert n == min(120, len(cap.outputs))
    atoms = sum(s["size"] for s in data["structures"])
    props = data["properties"]
    for name, p in props.items():
        assert len(p["values"]) == (atoms if p["target"] == "atom" else n), name
    assert {"u0_atom", "prediction: u0_atom", "absolute error", "map layers.2 0e [1]", "norm l=2 at layers.1"} <= set(props)
    assert any(k.startswith("shift of u0_atom with l=1 zeroed") for k in props)
    assert any(p["target"] == "atom" and k.startswith("norm l=1") for k, p in props.items())
    # the viewer opens on a mapped block, coloured by the error; the arrows are the l=1 vectors of a read point
    assert data["settings"]["map"]["x"]["property"].startswith("map ")
    arrows = data["shapes"]["l=1 vector"]["parameters"]["structure"]
    assert len(arrows) == n and all(len(a["vector"]) == 3 for a in arrows)
    # every structure is mapped here (120 < --map-points), in capture order: the errors are the capture's
    assert np.allclose(props["absolute error"]["values"], np.abs(cap.errors[:, 0]))
    import chemiscope

    assert chemiscope.show_input(str(path)) is not None  # chemiscope's own reader takes the file


def test_report_finds_the_unused_last_layer_blocks_and_controls_its_probes(report):
    v = report["verdict"]  # the readout is linear: the last layer's l > 0 blocks reach nothing
    assert ["layers.2", "1o"] in v["unreachable"] and ["layers.2", "2e"] in v["unreachable"]
    assert ["layers.2", "1o"] not in v["unused"] and ["layers.2", "0e"] not in v["unused"]
    table = v["table"].set_index(["point", "block"])
    assert table.loc[("layers.2", "2e"), "verdict"] == "unreachable by construction"
    assert {"zero", "mean", "resample"} <= set(table.columns)
    assert list(v["sweep"]["threshold"]) == ["1%", "2%", "5%", "10%"]
    util = report["tables"]["utilisation"]
    assert set(util["intervention"]) == {"zero", "mean", "resample", "removed"}
    assert set(util.loc[util["intervention"] == "removed", "block"]) == {"l=1", "l=2"}
    assert (util["scale_free_low"] <= util["scale_free"] + 1e-12).all()
    assert (util["scale_free"] <= util["scale_free_high"] + 1e-12).all()
    probes = report["tables"]["probes"]
    assert probes["r2_untrained"].notna().all() and (probes["controls"] == 5).all()
    assert (probes["r2_untrained_sd"] > 0).any() and (probes["r2_untrained_max"] >= probes["r2_untrained"]).all()
    assert np.allclose(probes["selectivity"], probes["r2"] - probes["r2_untrained"])
    assert (probes["above_controls"] == (probes["r2"] > probes["r2_untrained_max"])).all()
    assert probes["r2_shuffled"].median() < 0.1
    assert probes["r2_control_task"].notna().all()
    for k in range(1, 5):
        assert (report["out"] / "control" / f"seed{k}" / "meta.json").exists()
    cka = pd.read_csv(report["out"] / "tables" / "cka_trained_vs_untrained.csv")
    assert {"debiased_cka", "random_baseline", "linear_cka_raw"} <= set(cka.columns)
    assert (cka["random_baseline"].abs() < 0.1).all()


def test_report_command_and_bad_input(report, tmp_path, capsys):
    cap = load_capture(report["out"].parent / "cap")
    assert main(["report", str(cap.path), "--out", str(tmp_path / "r"), "--map-method", "pca",
                 "--compare", str(report["out"] / "control" / "capture"), "--device", "cpu"]) == 0
    assert (tmp_path / "r" / "figures" / "cka_compare.png").exists()
    assert "--compare" in (tmp_path / "r" / "report.md").read_text()
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a capture directory" in err[0]
    assert main(["report", str(cap.path), "--out", str(tmp_path / "x"), "--map-layers", "nope"]) == 2


def test_a_utilisation_table_measured_elsewhere_is_used_not_measured_again(report, tmp_path):
    # an experiment run measures utilisation already; the report takes its table, and its verdict
    # follows that table: here one block planted as unused under every intervention
    cap = load_capture(report["out"].parent / "cap")
    util = report["tables"]["utilisation"].drop(columns=["used"])
    planted = (util["point"] == "layers.1") & (util["block"] == "1o")
    util.loc[planted, ["scale_free", "scale_free_low", "scale_free_high", "utilisation", "utilisation_low",
                       "utilisation_high"]] = [0.001, 0.0, 0.002, 0.004, 0.0, 0.008]
    util["molecules"] = 77
    rep = make_report(cap, out=tmp_path / "r", device="cpu", controls=1, map_method="pca", utilisation=util,
                      log=lambda *a: None)
    assert ["layers.1", "1o"] in rep["verdict"]["unused"] and ["layers.1", "1o"] not in report["verdict"]["unused"]
    assert (pd.read_csv(tmp_path / "r" / "tables" / "utilisation.csv")["molecules"] == 77).all()
    assert not (tmp_path / "r" / "tables" / "utilisation.json").exists()  # nothing was measured here
    assert "first 77 captured" in (tmp_path / "r" / "report.md").read_text()


def test_the_orders_table_puts_dependence_recovery_and_necessity_side_by_side(report, tmp_path, capsys):
    cap = load_capture(report["out"].parent / "cap")
    util = report["tables"]["utilisation"].drop(columns=["used"])
    # necessity against a model that learned nothing: the run's own untrained initialisation, same structures
    untrained = report["out"] / "control" / "capture"
    rep = make_report(cap, out=tmp_path / "r", device="cpu", controls=1, map_method="pca", utilisation=util,
                      recovery_steps=5, necessity=[("l=1,2", str(untrained))], log=lambda *a: None)
    orders = rep["verdict"]["orders"].set_index("order")
    assert list(orders.index) == ["l=1", "l=2", "l=1,2"]
    assert (orders.loc[["l=1", "l=2"], "rests on"] == "recovery").all()
    assert orders.loc["l=1,2", "rests on"] == "necessity" and orders.loc["l=1,2", "verdict"] == "needed"
    assert orders.loc["l=1,2", "recovery"] == "not measured"
    legs = pd.read_csv(tmp_path / "r" / "tables" / "recovery.csv")
    assert set(legs["leg"]) == {"control", "dependence", "recovery", "necessity"}
    assert (legs.loc[legs["leg"] == "recovery", "steps"] == 5).all()
    text = (tmp_path / "r" / "report.md").read_text()
    assert "rests on recovery" in text and "fine-tuned for 5 Adam steps" in text
    assert main(["report", str(cap.path), "--out", str(tmp_path / "x"), "--necessity", "l=one:somewhere"]) == 2
    assert "--necessity takes ORDERS:CAPTURE" in capsys.readouterr().err


def test_map_criterion_scores_maps_against_their_nulls_and_sets_them_beside_the_verdicts(report):
    from irrepprobe import metrics as M
    from irrepprobe.metrics.maps import cross_table, map_score, map_scores

    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    planted = np.c_[y + 0.1 * rng.normal(size=300), rng.normal(size=300)]  # a map ordered by the target
    assert map_score(planted, y) > 0.8 and map_score(rng.normal(size=(300, 2)), y) < 0.1
    out = report["out"]
    cap = load_capture(out.parent / "cap")
    controls = [load_capture(p) for p in [out / "control" / "capture"] + [out / "control" / f"seed{k}" for k in (1, 2)]]
    y = M.invariant_targets(cap).iloc[:, 0].to_numpy()
    maps = map_scores(cap, y, controls, ["layers.1", "layers.2"], method="pca", permutations=10)
    assert len(maps) == 2 * 3 * 2 and set(maps["features"]) == {"components", "invariants"}
    assert (maps["permuted_95"] < 0.3).all()  # no relation scores near zero
    assert maps["untrained_max"].notna().all() and (maps["composition"] == maps["composition"].iloc[0]).all()
    cross = cross_table(maps, report["verdict"]["table"])
    row = cross.set_index(["point", "block"]).loc[("layers.2", "1o")]
    assert row["verdict"] == "unreachable by construction"  # a map of an unreachable block says nothing about use
    assert {"map looks structured (components)", "map looks structured (invariants)", "dependence"} <= set(cross)


def test_an_unreachable_block_has_no_dependence_outcome_and_order_lines_name_their_leg(report):
    table = report["verdict"]["table"].set_index(["point", "block"])
    for block in ("1o", "2e"):  # the linear readout reads only layers.2's scalars
        assert table.loc[("layers.2", block), "verdict"] == "unreachable by construction"
        assert table.loc[("layers.2", block), "dependence"] == "unreachable"
    assert "dispensable" not in set(table.loc[table["verdict"] == "unreachable by construction", "dependence"])
    first = (report["out"] / "report.md").read_text().split("<details>")[0]
    for line in (x for x in first.splitlines() if x.startswith("- **l=")):
        bold = line.split("**")[1]
        assert "(dependence: " in bold  # the leg the claim rests on, in the claim
        # "needed" and "not measured" are never said of the same thing: the claim is about this checkpoint
        assert "this checkpoint" in bold and "whether the architecture needs it: not measured" in line
