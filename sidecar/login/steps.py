"""The login page, as one small table: how each page is recognised and what the browser does on it.

The real sign-in page is not public and changes, so everything the browser knows about it lives here
(see docs/login.md). The driver looks at the page, takes the first row whose ``detect`` selector is
present, and acts on it; it stops when the browser reaches Lingma's own ``/auth/callback``.

kinds:
- ``human``: a captcha or an SMS code; the attempt fails at once and is not retried.
- ``refused``: the page says the credentials are wrong; the attempt fails (and may be retried).
- ``credentials``: fill each ``fill`` selector with the account's username or password, then ``press``.
- ``click``: press ``press`` (an optional second step, or the organisation picker's personal entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ("STEPS", "PageStep")

StepKind = Literal["human", "refused", "credentials", "click"]


@dataclass(frozen=True, slots=True)
class PageStep:
    name: str
    detect: str
    kind: StepKind
    fill: tuple[tuple[str, Literal["username", "password"]], ...] = ()
    press: str = ""


STEPS: tuple[PageStep, ...] = (
    PageStep("captcha", "#captcha, #nc_1_wrapper, .nc-container, iframe[src*='captcha']", "human"),
    PageStep("sms code", "#sms-code, input[name='sms_code'], input[name='checkCode']", "human"),
    PageStep("wrong password", "#error, .login-error, .fm-error", "refused"),
    PageStep("organisation picker", "#org-picker", "click", press="[data-org=''], .org-option"),
    PageStep("second step", "#second-step", "click", press="#continue, button[type='submit']"),
    PageStep(
        "credentials",
        "input[type='password']",
        "credentials",
        fill=(
            ("#username, #fm-login-id, input[name='username'], input[type='email']", "username"),
            ("input[type='password']", "password"),
        ),
        press="#login, #fm-login-submit, button[type='submit']",
    ),
)
