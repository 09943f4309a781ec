"""Math rendered at build time, as inline SVG: the pages need no MathJax and no network.

A Sphinx HTML math renderer (``html_math_renderer = "math_svg"``): every ``:math:`` role
and ``.. math::`` block is drawn by matplotlib's mathtext into an SVG whose glyphs are
paths, and the SVG is written into the page itself. mathtext covers the TeX subset the
documentation uses (fractions, roots, scripts, Greek letters, arrows); a formula it cannot
parse fails the build with the formula named, instead of showing raw LaTeX. The LaTeX
source stays in the page as the image's accessible label.
"""

import html
import io
import re

from docutils import nodes
from sphinx.errors import ExtensionError

_CACHE = {}


def render_svg(latex, fontsize):
    """``latex`` drawn by mathtext: the SVG markup, without its XML prologue."""
    key = (latex, fontsize)
    if key not in _CACHE:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import mathtext, rc_context
        from matplotlib.font_manager import FontProperties

        buffer = io.BytesIO()
        # Glyphs as paths (no fonts needed by the browser); a fixed salt keeps ids stable.
        with rc_context({"svg.fonttype": "path", "svg.hashsalt": "skensemble-docs",
                         "mathtext.fontset": "cm"}):
            try:
                mathtext.math_to_image(f"${latex}$", buffer, prop=FontProperties(size=fontsize),
                                       dpi=72, format="svg")
            except ValueError as exc:
                raise ExtensionError(f"mathtext cannot draw the formula {latex!r}: {exc}") from exc
        svg = buffer.getvalue().decode("utf-8")
        svg = svg[svg.index("<svg"):]
        svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
        _CACHE[key] = svg
    return _CACHE[key]


def _label(latex):
    return html.escape(" ".join(latex.split()), quote=True)


def visit_math(self, node):
    """Inline math: an SVG in the line of text."""
    latex = node.astext()
    self.body.append(f'<span class="math math-svg" role="img" aria-label="{_label(latex)}">'
                     f"{render_svg(latex, 15)}</span>")
    raise nodes.SkipNode


def visit_math_block(self, node):
    """Display math: one centred SVG per equation."""
    latex = node.astext()
    if node.get("label"):
        self.body.append(f'<span class="eqno">({node["number"]})</span>')
    self.body.append(self.starttag(node, "div", CLASS="math math-svg-block"))
    for part in [p for p in latex.split("\n\n") if p.strip()]:
        self.body.append(f'<p role="img" aria-label="{_label(part)}">'
                         f"{render_svg(part.strip(), 22)}</p>")
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app):
    """Register the renderer; conf.py selects it with ``html_math_renderer``."""
    app.add_html_math_renderer("math_svg", (visit_math, None), (visit_math_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
