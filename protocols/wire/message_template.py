"""Outreach message templates (``params.message_template``): which placeholders a signed template may use.

One place for the rule both sides apply: the coordinator's policy refuses a job whose template names a
placeholder outside :data:`APPROVED_PLACEHOLDERS` (rule R14), and the telco's channel engine
(``node.channels``) refuses it again before sending anything. Pure: no I/O.

Placeholders are ``{name}`` only: no positional ``{}``/``{0}``, no attribute or index access, no format
spec or conversion — a template can only insert the approved values, never reach into an object or a
subscriber's data. ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from protocols.wire.errors import ProtocolError

__all__ = ["APPROVED_PLACEHOLDERS", "MAX_MESSAGE_CHARS", "TemplateError", "check_template", "render_template"]

MAX_MESSAGE_CHARS = 335
"""Longest template and rendered message: five UCS-2 SMS parts (67 characters each), so a signed template
cannot make every recipient's phone (and the telco's SMSC bill) take dozens of parts."""

APPROVED_PLACEHOLDERS = frozenset({"bank_name", "app_link", "optout"})
"""What a message may say besides its fixed text: the bank's name, the app's link, the opt-out (退订) hint."""


class TemplateError(ProtocolError, ValueError):
    """A template names an unapproved placeholder, or a value for one it uses is missing."""

    status_hint = 400


def check_template(template: str) -> frozenset[str]:
    """The placeholders ``template`` uses, all approved.

    Raises:
        TemplateError: naming the first unapproved or malformed placeholder and the approved set.
    """
    approved = ", ".join("{" + p + "}" for p in sorted(APPROVED_PLACEHOLDERS))
    if len(template) > MAX_MESSAGE_CHARS:
        raise TemplateError(f"params.message_template is {len(template)} characters; shorten it to at most "
                            f"{MAX_MESSAGE_CHARS} (five SMS parts)")
    used: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"params.message_template is malformed ({exc}); write braces as {{{{ and }}}}, "
                            f"placeholders as one of {approved}") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in APPROVED_PLACEHOLDERS or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise TemplateError(f"params.message_template uses placeholder {shown}, which is not approved; "
                                f"use only {approved}")
        used.add(field)
    return frozenset(used)


def render_template(template: str, values: Mapping[str, str]) -> str:
    """``template`` with its placeholders filled from ``values``.

    Raises:
        TemplateError: an unapproved placeholder, or no value for a placeholder the template uses.
    """
    used = check_template(template)
    missing = sorted(used - set(values))
    if missing:
        raise TemplateError(f"params.message_template uses {{{missing[0]}}} but no value was given for it; "
                            f"set {missing[0]} for the channel (e.g. TANDEM_CHANNEL_{missing[0].upper()})")
    text = template.format_map({k: values[k] for k in used})
    if len(text) > MAX_MESSAGE_CHARS:
        raise TemplateError(f"params.message_template rendered is {len(text)} characters, over {MAX_MESSAGE_CHARS} "
                            f"(five SMS parts); shorten the template or the values (TANDEM_CHANNEL_APP_LINK ...)")
    return text
