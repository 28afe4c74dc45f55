"""Settings of callback authentication (`callback.auth.*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

AuthType = Literal["none", "basic", "oauth", "custom", "on-behalf", "query"]


class CallbackAuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: AuthType = "none"
