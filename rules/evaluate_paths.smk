# Output patterns and output functions of the evaluation and comparison stages (rules/evaluate.smk and
# rules/compare.smk include this file; keeping functions apart from rules keeps `snakemake --lint` clean).
from lenspipe.compare import TABLE_FORMATS, TABLES
from lenspipe.plots import FIGURES, FORMATS

# Output path patterns, written once.
SAMPLES = f"{OUT}/sample/{{estimator}}/samples.zarr"
SAMPLE_TIMING = f"{OUT}/sample/{{estimator}}/timing.json"
METRICS_CSV = f"{OUT}/evaluate/{{estimator}}/metrics.csv"
METRICS_JSON = f"{OUT}/evaluate/{{estimator}}/metrics.json"
FIGURE = f"{OUT}/evaluate/{{estimator}}/figures/{{figure}}.{{ext}}"
COMPARE_TABLE = f"{OUT}/compare/{{table}}.{{ext}}"
COMPARE_FIGURE = f"{OUT}/compare/comparison.{{ext}}"
SAMPLE_PROVENANCE = f"{OUT}/sample/{{estimator}}/provenance.json"
EVALUATE_PROVENANCE = f"{OUT}/evaluate/{{estimator}}/provenance.json"
COMPARE_PROVENANCE = f"{OUT}/compare/provenance.json"


def figure_files(figure, caption):
    """A figure's PDF (for the paper) and PNG (shown in the report), estimator left as a wildcard."""
    pdf, png = expand(FIGURE, figure=figure, ext=FORMATS, allow_missing=True)
    shown = report(
        png,
        caption=f"../report/{caption}.rst",
        category="Estimators",
        subcategory="{estimator}",
        labels={"estimator": "{estimator}", "figure": figure},
    )
    return [pdf, shown]


def figure_names():
    """Every per-estimator figure: those of FIGURES and one corner plot per configured test image."""
    return list(FIGURES) + [f"corner_{image}" for image in config["evaluation"]["corner_images"]]


def evaluation_figures():
    """Named figure outputs of the evaluate job, one per figure (corner plots share one caption)."""
    return {name: figure_files(name, "corner" if name.startswith("corner_") else name) for name in figure_names()}


def metrics_table():
    """The per-estimator metrics CSV, shown in the report."""
    return report(
        METRICS_CSV,
        caption="../report/metrics.rst",
        category="Estimators",
        subcategory="{estimator}",
        labels={"estimator": "{estimator}", "figure": "metrics table"},
    )


def comparison_tables():
    """Every comparison table in every format; the CSVs are shown in the report, each with its caption."""
    files = []
    for table in TABLES:
        for ext in TABLE_FORMATS:
            path = COMPARE_TABLE.format(table=table, ext=ext)
            if ext == "csv":
                path = report(
                    path,
                    caption=f"../report/compare_{table}.rst",
                    category="Comparison",
                    subcategory="Tables",
                    labels={"table": table},
                )
            files.append(path)
    return files


def comparison_figure():
    """The comparison figure as PDF (paper) and PNG (report)."""
    shown = report(
        COMPARE_FIGURE.format(ext="png"),
        caption="../report/comparison.rst",
        category="Comparison",
        subcategory="Figure",
        labels={"figure": "comparison"},
    )
    return [COMPARE_FIGURE.format(ext="pdf"), shown]


def final_evaluation_outputs():
    """Everything evaluation builds: per-estimator samples, metrics and figures, and the comparison."""
    estimators = estimator_names()
    outputs = expand([SAMPLE_TIMING, METRICS_CSV, METRICS_JSON], estimator=estimators)
    outputs += expand(FIGURE, estimator=estimators, figure=figure_names(), ext=FORMATS)
    outputs += expand(COMPARE_TABLE, table=TABLES, ext=TABLE_FORMATS)
    return outputs + expand(COMPARE_FIGURE, ext=FORMATS)
