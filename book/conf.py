"""Sphinx configuration of the book (``make book``; docs/book.md).

The engine of Jupyter Book 1: Sphinx with MyST-NB (notebooks and MyST Markdown) and
sphinx-book-theme, all from PyPI (the ``dev`` extra).  ``mnemonic_mu.drivers.book`` copies
this folder (this file and ``_static/``) into the book's source folder (``build/book/src/``)
beside the executed notebooks, the docs and MathJax, then runs ``python -m sphinx`` on that
folder: nothing is fetched while it builds and nothing the site loads comes from another
host.  Change the title or the theme here; the table of contents (the order a student reads
in) is ``REFERENCE`` and ``CHAPTERS`` in the driver.
"""

project = "mnemonic-mu"
html_title = "mnemonic-mu: one-shot unlearning with mnemonic codes"
author = "the mnemonic-mu authors"
root_doc = "index"

extensions = ["myst_nb", "sphinx.ext.mathjax", "sphinx.ext.githubpages"]  # githubpages: an empty .nojekyll
exclude_patterns = ["_static/**", "**.ipynb_checkpoints"]

# MyST Markdown: $...$ and $$...$$ are math, headings get GitHub's anchors (docs link to them)
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 4
suppress_warnings = ["myst.header"]  # a few docs pages open with "##": their title all the same

# The notebooks arrive executed (the kit's runner at the book's profile); never run them here
nb_execution_mode = "off"
nb_merge_streams = True  # a cell's printed lines in one block, as in JupyterLab
nb_render_markdown_format = "myst"  # a cell's Markdown output (05's attack table) gets $...$ math too

# MathJax 3 from the npm package (make book-tools), copied into _static/mathjax by the driver
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]  # book.css, and MathJax (copied in by the driver)
html_css_files = ["book.css"]
html_theme_options = {
    "home_page_in_toc": True,  # the README is the first entry of the navigation
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,  # each page's source: the executed .ipynb, the .md
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
html_sidebars = {"**": ["navbar-logo.html", "sbt-sidebar-nav.html"]}  # the header has the search box
