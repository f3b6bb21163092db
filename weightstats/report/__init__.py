"""Reports: a pure-data model rendered to one self-contained HTML page and to JSON.

* :mod:`.model` -- ReportModel, SectionModel and the blocks (tables, figures, prose);
* :mod:`.figures` -- one function per figure (matplotlib, Agg, SVG);
* :mod:`.render` -- Jinja2 rendering, number formats, the atomic no-clobber write;
* :mod:`.sections` -- one module per pluggable section (checkpoint, clt, vae);
* :mod:`.checkpoint_report` -- ``write_checkpoint_report`` for the CLI.

Import from the submodules; this file imports nothing so ``import weightstats`` stays light.
"""
