"""Sentences a non-native reader reads once: none on the built site runs over 40 words.

`microscopy_notebook.book.prose` reads the prose of every page (not code, outputs or tables) and
counts the words of each sentence; ``python -m microscopy_notebook.book.prose --list`` shows them.
"""

from __future__ import annotations

import pytest

from microscopy_notebook import book
from microscopy_notebook.book import prose

LIMIT = 40


def test_no_sentence_on_the_site_runs_over_40_words() -> None:
    if not (book.HTML / "index.html").exists():
        pytest.fail("no built site: run `nox -s docs` (nox -s site builds it before pytest)")
    found = prose.measure()
    assert len({s.page for s in found}) == len(prose.toc_pages())  # every page was read
    long = [f"{s.page} ({s.words} words): {s.text}" for s in found if s.words > LIMIT]
    assert not long, "\n\n".join(long)


def test_the_counter_splits_sentences_and_skips_code() -> None:
    html = (
        """<article class="bd-article"><section>
        <p>One short sentence. <code>gsutil</code> starts the second one, e.g. this one.</p>
        <ul><li><p>A list item, read as one sentence.</p></li></ul>
        <div class="highlight"><pre>a command that is not prose at all, however long it runs on
        and on and on</pre></div>
        <p>"""
        + " ".join(["word"] * 45)
        + """.</p>
    </section></article>"""
    )
    found = prose.sentences("planted", html)
    assert [s.words for s in found] == [3, 8, 7, 45]
    assert found[1].text.startswith("gsutil starts")
