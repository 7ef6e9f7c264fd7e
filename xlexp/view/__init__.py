"""A self-contained HTML view of a run, a sweep or a store: `python -m xlexp.view <path>`.

`read` gathers what the page shows from the artifacts (the only module that knows where the
stages put their files); `page` writes it as one HTML file with the data embedded as JSON and
vanilla JS that renders paged lists, so it opens from disk with no server and no network.
"""

from xlexp.view.page import render, write_view

__all__ = ["render", "write_view"]
