"""The parts of the study reports that still showed 3-seed bootstrap calls (issue 40), brought in line with
the planned seed-level calls: the verdict section at the head, the bootstrap verdicts of test error (replaced by
a pointer; the utilisation verdicts stay), Lee's learning-curve table on every committed seed (the 16k headline
pair has 5), and Lee's molecule-paired differences (their per-molecule errors exist for seeds 0-2 only:
removed with a pointer). Called by analyses/seed_level.py."""
from __future__ import annotations

import pandas as pd

from common import ROOT, SEED_LEVEL
from seed_level import _runs, _table

from irrepprobe.fileio import save_csv, save_text
from irrepprobe.metrics.seeds import t_interval

BEGIN, END = "<!-- seed-level verdicts: analyses/seed_level.py -->", "<!-- end of seed-level verdicts -->"
POINTER = ("The test-error verdicts that stood here came from a molecule bootstrap that treats the seeds as fixed "
           "(about 79% coverage at nominal 95% with 3 seeds) and are superseded by the planned seed-level "
           "verdicts at the head of this report ([seed_level.md](seed_level.md)).")


def replace(text: str, heading: str, body: str) -> str:
    """``text`` with the section under ``## heading`` (up to the next ``## ``) replaced by ``body``."""
    start = text.find(f"\n## {heading}\n")
    if start < 0:
        return text
    nxt = text.find("\n## ", start + 1)
    return text[:start + 1] + f"## {heading}\n\n{body.strip()}\n" + (text[nxt:] if nxt >= 0 else "")


def annotate(text: str, heading: str, note: str, mark: str) -> str:
    """``text`` with ``note`` (which starts with ``mark``) right under ``## heading``, replacing an earlier one."""
    start = text.find(f"\n## {heading}\n")
    if start < 0:
        return text
    body = start + len(f"\n## {heading}\n")
    if text.startswith("\n" + mark, body):
        end = text.index("\n\n", body + 1)
        text = text[:body] + text[end + 1:]
    return text[:body] + "\n" + note + "\n" + text[body:]


def _kept_verdicts(study: str, drop: str) -> list[str]:
    v = pd.read_csv(ROOT / "reports" / study / "tables" / "verdicts.csv")
    v = v[~v["finding"].str.startswith(drop)]
    what = ("which orders each seed uses (each seed's ablation, the seeds must agree), not a comparison of test "
            "errors" if study == "lee" else "which target gains most from L1, a ranking on the molecule bootstrap "
            "with the seeds fixed: read it as a description, not a call")
    return [POINTER, "", f"The rows that stay are about {what}.", "", *_table(v)]


def lee_curve() -> pd.DataFrame:
    """Test MAE per configuration over every committed seed: mean, Student's t interval over the seeds, epochs."""
    runs = _runs("lee")
    old = pd.read_csv(ROOT / "reports" / "lee" / "tables" / "learning_curve.csv").set_index("config")
    rows = []
    for config, g in runs.groupby("config", sort=False):
        g = g.sort_values("seed")
        x = g["test_mae"].to_numpy()
        mean, low, high = t_interval(x)
        rows.append({"config": config, "size": int(g["size"].iloc[0]), "family": config.split("-", 1)[1],
                     "params": int(g["params"].iloc[0]), "seeds": len(x),
                     "seed_ids": " ".join(str(int(v)) for v in g["seed"]), "test_mae": mean,
                     "ci_low": low, "ci_high": high, "seed_sd": x.std(ddof=1),
                     "epochs": "/".join(str(int(e)) for e in g["epochs"]),
                     "best_epoch": "/".join(str(int(e)) for e in g["best_epoch"]),
                     "cap": int(g["cap"].max()), "per_seed": " ".join(f"{v:.4g}" for v in x)})
    t = pd.DataFrame(rows).sort_values(["family", "size"], ignore_index=True)
    assert set(t["config"]) == set(old.index), "the committed curve has other configurations"
    return t


def refresh_sections(study: str, section: str) -> None:
    path = ROOT / "reports" / study / "README.md"
    text = path.read_text()
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        i = text.index("\n## ")
        text = text[:i + 1] + section + "\n\n" + text[i + 1:]
    for old in ("The verdicts below rest on", SEED_LEVEL[:40]):  # the note under the title, old or current
        if old in text:
            start = text.index(old)
            text = text[:start] + SEED_LEVEL + text[text.index("\n", start):]
            break
    if study == "lee":
        text = replace(text, "Verdicts", "\n".join(_kept_verdicts("lee", "Lee et al.: [0,3,4,5,6] beats")))
        curve = lee_curve()
        save_csv(curve, ROOT / "reports" / "lee" / "tables" / "learning_curve.csv")
        from curves import curve_figure  # noqa: PLC0415 - matplotlib only when the report is written

        fig = curve_figure(curve, "family", ROOT / "reports" / "lee", "learning_curve",
                           "U0 test MAE against training size (95% t intervals over seeds)", "test MAE (eV)")
        text = replace(text, "Test error against training size", "\n".join([
            "Test MAE (eV) on the same 2,000 test molecules, per configuration the mean over every committed "
            "seed (`seeds`: the headline pair at 16k has more than 3) with Student's t interval over the seeds. `epochs`: "
            "per seed, against `cap`: every run hit its cap.", "", *_table(curve, ".4g"),
            "Table: [tables/learning_curve.csv](tables/learning_curve.csv)", "",
            f"![Test MAE against training size per L set]({fig.relative_to(ROOT / 'reports' / 'lee')})", "",
            "*Test MAE against training size per L set* ([SVG](figures/learning_curve.svg))", ""]))
        text = replace(text, "Paired differences between L sets", (
            "The molecule-paired differences that stood here used seeds 0-2 only (the per-molecule errors of the "
            "later 16k seeds are not committed) and a bootstrap that treats the seeds as fixed; the comparisons of "
            "L sets are the seed-level ones at the head of this report and in [seed_level.md](seed_level.md)."))
    else:
        text = replace(text, "Verdicts", "\n".join(_kept_verdicts("miller", "Miller et al.: L1 beats L0 on")))
        text = replace(text, "Paired differences: L1 against L0, and depth 3 against depth 2", (
            "The molecule-paired differences that stood here (a bootstrap that treats the seeds as fixed) carried "
            "verdicts of their own; every comparison is now made at the seed level, as the plan says, at the head "
            "of this report and in [seed_level.md](seed_level.md) (tables/seed_level.csv, tables/pooled.csv)."))
        lat = pd.read_csv(ROOT / "reports" / "miller" / "tables" / "latent_within_target_depth.csv")
        lat = lat[lat["within"] == "target x depth x net"]
        text = annotate(text, "Latent structure against test error, within each size", (
            "Read with care: the correlations below pool targets, depths and both nets. Among the seeds of one "
            "model (within target x depth x net, [seed_level.md](seed_level.md)) Spearman's rho is "
            + ", ".join(f"{r.rho:+.2f} (p {r.p:.2g}, n{r.size})" for r in lat.itertuples())
            + ": no link between latent structure and test error there."), "Read with care:")
    save_text(text, path)
