"""The report stage: everything a pipeline run produced, on one page.

Writes, under `report.out` (default reports/):
- `index.md` and `index.html` (self-contained: no scripts, no remote assets; pictures are relative
  links into figures/ and curves/, so the page works offline and from a copied folder);
- `curves/<name>.png`: every training-curve CSV of plots/ drawn as PNG (what `dvc plots show`
  renders offline);
- `tables/<table>.md`: each paper table whose synthetic counterpart comes from this run's metrics
  (the published numbers beside ours; see stages/paper_tables.py).

Reads whatever exists: metrics.json (evaluate: propagation, translation, and the test_time and
baselines sections it nests), clips.json, download.json, figures/**, plots/*.csv. A section whose
file is missing is shown as "not run". Stage runs link to the MLflow UI.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from selfsup.io import atomic_path, write_text
from stages import paper_tables
from stages.common import params, setup_logging
from stages.paper_tables import VariantResult
from stages.tracking import git_revision, stage_run

log = logging.getLogger("stages.report")

STAGES = ("download", "clips", "pretrain", "propagate", "translate", "evaluate")


def pipeline_stages(dvc_file: Path = Path("dvc.yaml")) -> tuple[str, ...]:
    """The stages of dvc.yaml in file order (without this one); STAGES when there is none."""
    import yaml

    try:
        stages = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        return STAGES
    names = tuple(name for name in stages if name != "report")
    return names or STAGES
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
# metrics.json sections that nest another stage's report file as it is
NESTED_REPORTS = {"test_time": "test_time.json", "baselines": "baselines.json"}
MAX_LIST_ITEMS = 20


# --------------------------------------------------------------------------------------------
# A tiny document model rendered to both Markdown and HTML
# --------------------------------------------------------------------------------------------

@dataclass
class Doc:
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str, links: Sequence[tuple[str, str]] = ()) -> None:
        """A paragraph; `links` are (label, href) pairs appended to it."""
        self.blocks.append(("p", text, tuple(links)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]],
              links: Mapping[tuple[int, int], str] | None = None) -> None:
        self.blocks.append(("table", list(header), [list(map(_cell, r)) for r in rows], dict(links or {})))

    def image(self, src: str, caption: str) -> None:
        self.blocks.append(("img", src, caption))

    def bullets(self, items: Sequence[tuple[str, str | None]]) -> None:
        """(text, href or None) items."""
        self.blocks.append(("ul", list(items)))

    def markdown(self) -> str:
        out: list[str] = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += [f"{'#' * block[1]} {block[2]}", ""]
            elif kind == "p":
                text = block[1] + "".join(f" [{label}]({href})" for label, href in block[2])
                out += [text, ""]
            elif kind == "table":
                _, header, rows, links = block
                out.append("| " + " | ".join(_md(h) for h in header) + " |")
                out.append("|" + "---|" * len(header))
                for i, row in enumerate(rows):
                    cells = [f"[{_md(c)}]({links[(i, j)]})" if (i, j) in links else _md(c)
                             for j, c in enumerate(row)]
                    out.append("| " + " | ".join(cells) + " |")
                out.append("")
            elif kind == "img":
                out += [f"![{block[2]}]({block[1]})", f"*{block[2]}*", ""]
            elif kind == "ul":
                out += [f"- [{t}]({href})" if href else f"- {t}" for t, href in block[1]] + [""]
        return "\n".join(out).rstrip() + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        body: list[str] = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{e(block[2])}</h{block[1]}>")
            elif kind == "p":
                links = "".join(f' <a href="{e(href)}">{e(label)}</a>' for label, href in block[2])
                body.append(f"<p>{e(block[1])}{links}</p>")
            elif kind == "table":
                _, header, rows, links = block
                head = "".join(f"<th>{e(h)}</th>" for h in header)
                trs = []
                for i, row in enumerate(rows):
                    tds = []
                    for j, c in enumerate(row):
                        inner = f'<a href="{e(links[(i, j)])}">{e(c)}</a>' if (i, j) in links else e(c)
                        tds.append(f"<td>{inner}</td>")
                    trs.append("<tr>" + "".join(tds) + "</tr>")
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(trs)}</tbody></table>")
            elif kind == "img":
                body.append(f'<figure><img src="{e(block[1])}" alt="{e(block[2])}" loading="lazy">'
                            f"<figcaption>{e(block[2])}</figcaption></figure>")
            elif kind == "ul":
                items = "".join(f'<li><a href="{e(href)}">{e(t)}</a></li>' if href else f"<li>{e(t)}</li>"
                                for t, href in block[1])
                body.append(f"<ul>{items}</ul>")
        style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
                 "color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;"
                 "padding:.25em .6em;text-align:left;font-variant-numeric:tabular-nums}th{background:#f3f3f3}"
                 "figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}"
                 "img{max-width:520px;border:1px solid #ddd}figcaption{font-size:.85em;color:#555}"
                 "h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{e(title)}</title><style>{style}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def read_json(path: Path) -> Any | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        log.warning("%s: not valid JSON (%s); shown as not run", path, exc)
        return None


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mapping -> (dotted key, value) rows; long lists are summarised."""
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += flatten(value, f"{name}.")
        elif isinstance(value, list) and (len(value) > MAX_LIST_ITEMS or any(isinstance(v, (dict, list)) for v in value)):
            rows.append((name, f"{len(value)} items"))
        else:
            rows.append((name, value))
    return rows


def find_stage_runs(stages: Iterable[str]) -> dict[str, str]:
    """Run id per stage: the one under this pipeline run, else the latest of this DVC experiment."""
    if os.environ.get("SELFSUP_TRACKING", "on").lower() in {"off", "0", "false", "no"}:
        return {}
    try:
        import mlflow

        from stages.tracking import EXPERIMENT, tracking_uri

        client = mlflow.MlflowClient(tracking_uri=tracking_uri())
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            return {}
        parent = os.environ.get("SELFSUP_PARENT_RUN_ID", "")
        exp_name = os.environ.get("DVC_EXP_NAME", "")
        found: dict[str, str] = {}
        for stage in stages:
            clauses = [f"tags.`selfsup.stage` = '{stage}'"]
            runs = []
            if parent:
                runs = client.search_runs([exp.experiment_id], " and ".join(
                    clauses + [f"tags.mlflow.parentRunId = '{parent}'"]),
                    order_by=["attributes.start_time DESC"], max_results=1)
            if not runs:
                runs = client.search_runs([exp.experiment_id], " and ".join(
                    clauses + [f"tags.`dvc.exp_name` = '{exp_name}'"]),
                    order_by=["attributes.start_time DESC"], max_results=1)
            if runs:
                found[stage] = runs[0].info.run_id
                found[f"{stage}.parent"] = runs[0].data.tags.get("mlflow.parentRunId", "")
        return found
    except Exception as exc:  # the report must not fail because the store cannot be read
        log.warning("MLflow runs not looked up: %s", exc)
        return {}


def run_link(base: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/runs/{run_id}"


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------

def draw_curves(csv_path: Path, png_path: Path) -> bool:
    """One panel per numeric column against `step` (or the first column). False if nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    try:
        frame = pd.read_csv(csv_path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        log.warning("%s: not drawn (%s)", csv_path, exc)
        return False
    if frame.empty:
        return False
    x = "step" if "step" in frame.columns else frame.columns[0]
    ys = [c for c in frame.columns if c != x and pd.api.types.is_numeric_dtype(frame[c])
          and frame[c].notna().any()]
    if not ys:
        return False
    cols = min(3, len(ys))
    rows = math.ceil(len(ys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, y in zip(axes.flat, ys):
        data = frame[[x, y]].dropna()
        ax.plot(data[x], data[y], linewidth=1.2)
        ax.set_title(y, fontsize=10)
        ax.set_xlabel(x, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(ys):]:
        ax.set_visible(False)
    fig.suptitle(csv_path.stem, fontsize=11)
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------

def metric_sets(section: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """{model: {metric: value}} -> header, rows."""
    models = [m for m, v in section.items() if isinstance(v, Mapping)]
    keys: list[str] = []
    for m in models:
        for k, v in section[m].items():
            if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    rows = [[m] + [section[m].get(k) for k in keys] for m in models]
    return ["model"] + keys, rows


def figures_under(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not p.name.startswith("."))


def build(out: Path, metrics_file: Path, mlflow_url: str, download_datasets: Sequence[str],
          runs: Mapping[str, str], stages: Sequence[str] = STAGES) -> tuple[Doc, dict[str, str]]:
    """The report document and the paper tables' Markdown (by file name)."""
    metrics = read_json(metrics_file)
    clips = read_json(out / "clips.json")
    download = read_json(out / "download.json")
    curves = {csv.stem: out / "curves" / f"{csv.stem}.png" for csv in sorted((out / "plots").glob("*.csv"))}
    curves = {name: png for name, png in curves.items() if draw_curves(out / "plots" / f"{name}.csv", png)}
    doc = Doc()
    doc.h(1, "selfsup report")
    exp = os.environ.get("DVC_EXP_NAME", "")
    doc.p(f"Generated {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from git "
          f"revision {git_revision()[:10]}" + (f", DVC experiment {exp}" if exp else "") + ".")
    shown: set[Path] = set()

    doc.h(2, "Runs")
    rows, links = [], {}
    for stage in stages:
        run_id = runs.get(stage, "")
        if run_id:
            links[(len(rows), 1)] = run_link(mlflow_url, run_id)
        rows.append([stage, run_id or "not tracked"])
    doc.table(["stage", "MLflow run"], rows, links)
    doc.p(f"Run links open the MLflow UI at {mlflow_url} (start it with `make ui`); "
          "`selfsup runs` compares runs in the terminal.")

    for title, data in (("Data sets (download)", download), ("Clip index (clips)", clips)):
        doc.h(2, title)
        if data is None or not isinstance(data, Mapping):
            doc.p("not run")
            continue
        doc.table(["key", "value"], flatten(data))

    doc.h(2, "Pretraining (CRW)")
    _curves_and_figures(doc, out, "pretrain", curves, shown)

    doc.h(2, "Label propagation")
    propagation = (metrics or {}).get("propagation") if isinstance(metrics, Mapping) else None
    for name, label, note in (("davis", "DAVIS-2017 (J&F on the official 0..1 scale)", ""),
                              ("jhmdb", "JHMDB keypoints (PCK, %)", ""), ("vip", "VIP parts (mIoU, %)", "")):
        doc.h(3, label)
        section = (propagation or {}).get(name) if isinstance(propagation, Mapping) else None
        if not isinstance(section, Mapping) or not section:
            doc.p("not run")
            continue
        header, rows = metric_sets(section)
        doc.table(header, rows)
    _figures(doc, out / "figures" / "propagate", out, shown)

    doc.h(2, "Unpaired translation (CUT / FastCUT)")
    translate = (metrics or {}).get("translate") if isinstance(metrics, Mapping) else None
    if isinstance(translate, Mapping) and translate:
        header, rows = metric_sets(translate)
        doc.table(header, rows)
    else:
        doc.p("not run")
    _curves_and_figures(doc, out, "translate", curves, shown)

    test_time = (metrics or {}).get("test_time") if isinstance(metrics, Mapping) else None
    render_test_time(doc, test_time if isinstance(test_time, Mapping) else None)
    _figures(doc, out / "figures" / "test_time", out, shown)

    baselines = (metrics or {}).get("baselines") if isinstance(metrics, Mapping) else None
    render_baselines(doc, baselines if isinstance(baselines, Mapping) else None)

    if isinstance(metrics, Mapping):
        extra = {k: v for k, v in metrics.items() if k not in {"propagation", "translate"} | NESTED_REPORTS.keys()}
        if extra:
            doc.h(2, "Other metrics")
            doc.table(["key", "value"], flatten(extra))

    # every other summary a stage wrote (pretrain.json, propagate.json, ...); the stage reports
    # that metrics.json nests are already shown above
    known = {"metrics.json", "clips.json", "download.json", metrics_file.name}
    known |= {name for key, name in NESTED_REPORTS.items() if isinstance(metrics, Mapping) and key in metrics}
    for path in sorted(out.glob("*.json")):
        data = read_json(path) if path.name not in known else None
        if isinstance(data, Mapping) and data:
            doc.h(2, f"{path.stem} ({path.name})")
            doc.table(["key", "value"], flatten(data))

    doc.h(2, "Paper tables")
    tables: dict[str, str] = {}
    evaluate = {k: v for k, v in (("pipeline", runs.get("evaluate.parent", "")),
                                  ("evaluate", runs.get("evaluate", ""))) if v}
    for table in paper_tables.TABLES.values():
        if not table.single_run:
            continue
        embedded = not paper_tables.uses_datasets(table, download_datasets)
        result = VariantResult(table.embedded_variants[0], metrics if isinstance(metrics, Mapping) else None,
                               evaluate)
        tables[f"{table.name}.md"] = paper_tables.render_markdown(table, [result], embedded=embedded,
                                                                  mlflow_url=mlflow_url)
    listed = sorted(set(tables) | {p.name for p in (out / "tables").glob("*.md")})
    doc.bullets([(name[:-3], f"tables/{name}") for name in listed])
    doc.p("Tables from several runs (ablations) are written by `selfsup table <name>`.")

    rest = [png for png in curves.values() if png not in shown]
    rest += [p for p in figures_under(out / "figures") if p not in shown]
    rest += [p for p in figures_under(out / "plots") if p not in shown]
    if rest:
        doc.h(2, "Other figures")
        for path in rest:
            doc.image(path.relative_to(out).as_posix(), path.relative_to(out).as_posix())
    return doc, tables


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _difference(method: Any, baseline: Any) -> float | None:
    a, b = _number(method), _number(baseline)
    return None if a is None or b is None else a - b


def render_test_time(doc: Doc, section: Mapping[str, Any] | None) -> None:
    """metrics.json's test_time section: each way of learning at test time beside the model without it."""
    doc.h(2, "Learning at test time")
    if not section:
        doc.p("not run")
        return
    doc.h(3, "CRW test-time adaptation (DAVIS, official 0..1 scale)")
    davis = _get(section, "crw_adapt", "davis")
    if isinstance(davis, Mapping):
        adapted, frozen = davis.get("adapted") or {}, davis.get("frozen") or {}
        rows = [[key, adapted[key], frozen.get(key), _difference(adapted[key], frozen.get(key))]
                for key in adapted if _number(adapted[key]) is not None]
        seconds = davis.get("seconds_per_video") or {}
        rows.append(["seconds per video", seconds.get("adapted"), seconds.get("frozen"),
                     _difference(seconds.get("adapted"), seconds.get("frozen"))])
        doc.table(["measure", "adapted", "frozen (baseline)", "adapted − frozen"], rows)
        doc.p(f"{_cell(davis.get('videos'))} videos; the adaptation alone takes "
              f"{_cell(_number(seconds.get('adaptation_only')))} s per video.")
        variants = davis.get("variants") or {}
        if variants:
            base = frozen.get("J&F-Mean")
            rows = [[name, v.get("J&F-Mean"), base, _difference(v.get("J&F-Mean"), base), v.get("seconds_per_video")]
                    for name, v in {"configured adaptation": {**adapted, "seconds_per_video": seconds.get("adapted")},
                                    **variants}.items() if isinstance(v, Mapping)]
            doc.table(["variant", "J&F-Mean", "frozen J&F-Mean (baseline)", "gain", "seconds per video"], rows)
    else:
        doc.p("not run")

    doc.h(3, "Online test-then-train stream (DAVIS, running mean of J&F)")
    stream = section.get("stream")
    if isinstance(stream, Mapping):
        videos = f"{_cell(stream.get('videos'))} / {_cell(stream.get('total'))}"
        doc.table(["videos", "test-then-train", "frozen (baseline)", "gain", "seconds per video"],
                  [[videos, stream.get("running"), stream.get("frozen_running"),
                    _difference(stream.get("running"), stream.get("frozen_running")), stream.get("seconds_per_video")]])
    else:
        doc.p("not run")

    doc.h(3, "Test-time training with rotation prediction (accuracy, fraction)")
    ttt = section.get("ttt")
    if isinstance(ttt, Mapping):
        shifts = {"clean": ttt.get("clean"), **(ttt.get("shifts") or {}), "mean over shifts": ttt.get("mean")}
        rows = [[name, r.get("standard"), r.get("online"), r.get("baseline"),
                 _difference(r.get("standard"), r.get("baseline")), _difference(r.get("online"), r.get("baseline")),
                 r.get("rotation_accuracy")]
                for name, r in shifts.items() if isinstance(r, Mapping)]
        doc.table(["shift", "TTT standard", "TTT online", "no TTT (baseline)", "standard − baseline",
                   "online − baseline", "rotation accuracy"], rows)
        doc.p(f"{_cell(ttt.get('test_images'))} test images per shift (`<kind>@<severity>`).")
    else:
        doc.p("not run")


SET_LABELS = {"davis": "DAVIS", "jhmdb": "JHMDB", "vip": "VIP", "esvm": "Exemplar-SVM", "cosine": "cosine"}


def nested_table(entries: Mapping[str, Any], part: str, first: str) -> tuple[list[str], list[list[Any]]]:
    """{row: {part: {group: {metric: value}}}} -> header, rows with one column per group × metric."""
    flat = {name: dict(flatten(entry.get(part) or {})) for name, entry in entries.items() if isinstance(entry, Mapping)}
    keys: list[str] = []
    for values in flat.values():
        keys += [k for k, v in values.items() if k not in keys and _number(v) is not None]
    header = [first] + [" ".join(SET_LABELS.get(w, w) for w in k.split(".", 1)) for k in keys]
    return header, [[name] + [values.get(k) for k in keys] for name, values in flat.items()]


def render_baselines(doc: Doc, section: Mapping[str, Any] | None) -> None:
    """metrics.json's baselines section: the older methods beside CRW, a random encoder and raw pixels."""
    doc.h(2, "Baselines (lecture contrast)")
    models = section.get("models") if section else None
    if not isinstance(models, Mapping) or not models:
        doc.p("not run")
        return
    doc.p("Every method trained on the same clips and scored the same way; `random` (an untrained encoder) "
          "and `pixels` are the floor. Full table: tables/lecture-contrast.md.")
    doc.h(3, "Label propagation (DAVIS on the 0..1 scale, JHMDB PCK and VIP mIoU in %)")
    doc.table(*nested_table(models, "propagation", "method"))
    doc.h(3, "Instance retrieval (precision@k, %)")
    doc.table(*nested_table(models, "retrieval", "method"))
    chance = section.get("chance") or {}
    doc.h(3, "Linear probes on frozen features (accuracy, %)")
    header, rows = nested_table(models, "probe", "method")
    doc.table(header, rows + [["chance"] + [chance.get(h) for h in header[1:]]])
    ablation = section.get("ablation")
    doc.h(3, "Augmentation leave-one-out (SimCLR)")
    if isinstance(ablation, Mapping) and ablation:
        header, rows = nested_table(ablation, "propagation", "augmentations")
        for part in ("probe", "retrieval"):
            more_header, more_rows = nested_table(ablation, part, "augmentations")
            header += [f"{h} probe" for h in more_header[1:]] if part == "probe" else more_header[1:]
            rows = [row + more[1:] for row, more in zip(rows, more_rows)]
        doc.table(header, rows)
    else:
        doc.p("not run")


def _curves_and_figures(doc: Doc, out: Path, name: str, curves: Mapping[str, Path], shown: set[Path]) -> None:
    png = curves.get(name)
    if png is not None:
        doc.image(png.relative_to(out).as_posix(), f"{name} curves (plots/{name}.csv)")
        shown.add(png)
    else:
        doc.p(f"not run (no curves in plots/{name}.csv)")
    _figures(doc, out / "figures" / name, out, shown)


def _figures(doc: Doc, folder: Path, out: Path, shown: set[Path]) -> None:
    for path in figures_under(folder):
        rel = path.relative_to(out).as_posix()
        doc.image(rel, rel)
        shown.add(path)


def write_report(out: Path, metrics_file: Path, mlflow_url: str, download_datasets: Sequence[str],
                 runs: Mapping[str, str], stages: Sequence[str] = STAGES) -> list[Path]:
    """Write index.md, index.html, curves/*.png and tables/*.md; return the files written."""
    doc, tables = build(out, metrics_file, mlflow_url, download_datasets, runs, stages)
    written = [write_text(out / "index.md", doc.markdown()),
               write_text(out / "index.html", doc.html("selfsup report"))]
    for name, text in tables.items():
        written.append(write_text(out / "tables" / name, text))
    return written


def main() -> None:
    setup_logging()
    p = params()
    out = Path(p.report.out)
    with stage_run("report", p.report) as run:
        stages = pipeline_stages()
        runs = find_stage_runs(stages)
        written = write_report(out, Path(p.evaluate.out), p.report.mlflow_url, p.download.datasets, runs,
                               stages)
        for path in written:
            run.log_artifact(path, "report")
        if (out / "curves").is_dir():
            run.log_artifact(out / "curves", "report/curves")
        log.info("report: %s (%d files)", out / "index.html", len(written))


if __name__ == "__main__":
    main()
