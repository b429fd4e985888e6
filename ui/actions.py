"""Operator actions: confirmed in the UI, checked on the server, written to the audit log.

Buttons only *request* an action (session state); `run_pending` performs it through core.auth.perform,
which checks the role of the user resolved on the server for this very run. A viewer who forges a
request (or a stale button of a demoted user) is refused and audited, whatever the page showed; so
is every action while the audit log cannot be written. Whatever fails, the page shows one message
(`attempt` maps every outcome to it, for these buttons and for the pages' own actions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from core.auth import perform
from core.errors import ConflictError, PermissionDeniedError, SignalStreamError
from ui import context

PENDING = "pending_action"
CONFIRM = "confirm_action"
MESSAGE = "action_message"


def _handlers() -> dict[str, Callable[[str], Any]]:
    backend = context.backend()
    return {
        "start_crawler": lambda name: backend.crawlers.start(name),
        "start_job": lambda _name: backend.job.start(),
        "reset_checkpoint_and_start_job": lambda _name: backend.job.start(reset_checkpoint=True),
        "stop_job": lambda _name: backend.job.stop(),
        "stop_replay": lambda _name: context.replay_manager().stop(),
    }


def request(action: str, target: str) -> None:
    """Ask for an action to run on the next script run (a button's on_click)."""
    st.session_state[PENDING] = (action, target)
    st.session_state.pop(CONFIRM, None)


def ask(action: str, target: str, question: str) -> None:
    """Ask the user to confirm an action before it is requested."""
    st.session_state[CONFIRM] = (action, target, question)


def confirmation(key: str, actions: set[str]) -> None:
    """Draw the pending confirmation of one of these actions, if any: Confirm / Cancel."""
    pending = st.session_state.get(CONFIRM)
    if not pending or pending[0] not in actions:
        return
    action, target, question = pending
    with st.container(border=True):
        st.markdown(question)
        with st.container(horizontal=True):
            st.button("Confirm", type="primary", key=f"{key}_confirm", on_click=request, args=(action, target))
            st.button("Cancel", key=f"{key}_cancel", on_click=lambda: st.session_state.pop(CONFIRM, None))


def attempt(action: str, target: str, run: Callable[[], Any]) -> None:
    """Perform an action through core.auth.perform (role check, audit) and keep one message about its outcome."""
    label = f"{action.replace('_', ' ')} {target}"
    try:
        perform(context.current_user(), action, target, run, context.audit_log())
    except PermissionDeniedError as error:
        st.session_state[MESSAGE] = ("error", f"Refused: {error}")
    except ConflictError as error:
        st.session_state[MESSAGE] = ("info", str(error))
    # A local action fails on its files with OSError; perform has audited it as failed either way.
    except (SignalStreamError, OSError) as error:
        st.session_state[MESSAGE] = ("error", f"{label} failed: {error}")
    else:
        st.session_state[MESSAGE] = ("success", f"{label}: started")


def run_pending() -> None:
    """Perform a requested action once, with the role check and the audit entry; show the last outcome."""
    pending = st.session_state.pop(PENDING, None)
    if pending:
        action, target = pending
        handler = _handlers().get(action)
        if handler is None:
            st.session_state[MESSAGE] = ("error", f"Unknown action {action!r}")
        else:
            attempt(action, target, lambda: handler(target))
            context.forget_states()
    message = st.session_state.pop(MESSAGE, None)
    if message:
        kind, text = message
        {"success": st.success, "info": st.info, "error": st.error}[kind](text)
