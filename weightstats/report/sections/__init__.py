"""Pluggable report sections: one module per analysis.

How to add a section (the CLT and VAE analyses do it this way)
---------------------------------------------------------------
A section is a plain function in its own module of this package, e.g.
``weightstats/report/sections/clt.py``, that turns analysis results into one or more
:class:`~weightstats.report.model.SectionModel` objects. Nothing needs registering and no other
section is touched::

    from weightstats.report.model import Column, FigureGrid, KeyNumber, KeyNumbers, Prose, \\
        SectionModel, Table
    from weightstats.report import figures  # encode(fig, key=..., title=...) -> Figure

    def clt_section(frame, *, rng=None) -> SectionModel:
        fig = ...  # a matplotlib.figure.Figure (object API, no pyplot)
        return SectionModel(
            key="clt",                        # unique, lowercase: the HTML anchor
            title="Is it the central limit theorem?",
            summary="One sentence under the heading.",
            blocks=(
                KeyNumbers("Plain-text answer.", (KeyNumber("tensors", 12, "int"),)),
                Table("clt-table", "Per tensor", frame,  # raw numbers, a plain frame
                      (Column("tensor", "tensor", "text"),
                       Column("kurtosis", "kurtosis", "fixed3"))),
                FigureGrid("clt-figs", "Trajectories",
                           (figures.encode(fig, key="clt-traj", title="..."),)),
                Prose("What this means", ("Plain text paragraph.",)),
            ),
        )

The caller assembles and writes a report::

    from weightstats.report.model import build_report
    from weightstats.report.render import write_report
    model = build_report("My run", [*checkpoint_sections(frame, values), clt_section(clt)], meta)
    write_report(model, "report.html", force=False, json_path="report.json")

Rules of the seam
-----------------
* Numbers stay raw in the model (floats, NaN); pick a display format per value with
  ``Column(fmt=...)`` / ``KeyNumber(fmt=...)`` from :data:`weightstats.report.model.FORMATS`.
  The JSON export carries every column of a table's frame, so put the numbers there.
* Text is plain text: it is escaped, so untrusted names are safe anywhere; do not pass HTML.
* Keys (section, table, figure, grid) must be unique in a report: prefix them with the
  section's key (``clt-...``); :func:`~weightstats.report.model.build_report` checks.
* Figures go through :func:`weightstats.report.figures.encode` (SVG, deterministic) and
  untrusted names drawn in a figure through :func:`weightstats.report.figures.plain`.
* Import sections from their module (``from weightstats.report.sections.clt import
  clt_section``); this ``__init__`` stays free of imports so each section's dependencies are
  paid only by reports that use it.
"""
