"""The research appendix: certificates (and evaluation results) -> LaTeX, Markdown and figures.

    sources.py   certificates verified before use, results files, training provenance
    paper.py     C17's published numbers, read from each task (Task.paper())
    content.py   what the appendix says: text, tables and figure data, with their sources
    figures.py   matplotlib figures, byte-deterministic
    render.py    jinja2 templates for the .tex and .md files, with LaTeX escaping
    latex.py     pdflatex / bibtex

Only `verifier.cli` imports this package, inside the `appendix` command, so other commands
never load matplotlib or jinja2.
"""
