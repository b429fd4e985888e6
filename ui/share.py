"""A page's view in its URL: the one place pages read and write st.query_params (core.views parses them).

How Streamlit (1.67) treats the URL, which this follows: a script's write to st.query_params makes the
browser push a history entry (history.pushState; replaceState while the rerun answers a Back or Forward);
Back and Forward rerun the page with that entry's URL; a page switch drops the parameters. A widget bound
with `bind="query-params"` would only replace the URL (no history entry), so Back would leave the page
instead of going back one view: the widgets here are not bound.

So a page asks `opened()` for the view its URL names, and shows it in its widgets when the URL is news to it
(opened, pasted, Back/Forward); once it has read its widgets, `keep()` writes that view to the URL when the user
changed it: one history entry per change of view, and the same view for the same URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import streamlit as st

V = TypeVar("V")


@dataclass(frozen=True)
class Synced(Generic[V]):
    """The URL parameters a page last read or wrote, the view they name, and the notices its parsing gave."""

    params: dict[str, list[str]]
    view: V
    notices: tuple[str, ...]


def params(keys: Sequence[str]) -> dict[str, list[str]]:
    """Return the URL's values of `keys` (every value of a repeated key), leaving out keys it does not have."""
    return {key: st.query_params.get_all(key) for key in keys if key in st.query_params}


def _state_key(page: str) -> str:
    return f"url_view_{page}"


def opened(page: str, keys: Sequence[str], parse: Callable[[dict[str, list[str]]], tuple[V, list[str]]]
           ) -> tuple[V, bool, tuple[str, ...]]:
    """Return the view the URL names, True when it is news to this page (the widgets must show it), and the
    notices about values of the URL that were left at their default (shown for as long as the URL has them)."""
    given = params(keys)
    synced: Synced[V] | None = st.session_state.get(_state_key(page))
    if synced is not None and synced.params == given:
        return synced.view, False, synced.notices
    view, notices = parse(given)
    st.session_state[_state_key(page)] = Synced(given, view, tuple(notices))
    return view, True, tuple(notices)


def show(values: Mapping[str, Any], news: bool) -> None:
    """Set widgets' values (by key) before they are drawn: all of them for a view that is news, else those that
    have none (a widget's value is dropped when it was not drawn, after a page switch for one)."""
    for key, value in values.items():
        if news or key not in st.session_state:
            st.session_state[key] = value


def keep(page: str, keys: Sequence[str], view: V, encode: Callable[[V], dict[str, list[str]]]) -> bool:
    """Write `view` to the URL when it is not the view the URL names, in one update (one history entry), and
    return True; parameters of other keys (kiosk, ...) stay."""
    synced: Synced[V] | None = st.session_state.get(_state_key(page))
    if synced is not None and synced.view == view:
        return False
    written = encode(view)
    others = {key: st.query_params.get_all(key) for key in st.query_params if key not in keys}
    st.query_params.from_dict({**others, **written})
    st.session_state[_state_key(page)] = Synced(written, view, ())
    return True
