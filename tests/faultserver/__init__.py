"""Loopback fault-injecting Wrenn server for the reliability tests.

The scenario reference is the docstring of :mod:`faultserver.server`.
"""

from .log import ConnectionRecord, RequestRecord, WsEvent
from .scenarios import Scenario, ScenarioError, hdr, parse_scenario, rawra
from .server import FaultServer

__all__ = [
    "ConnectionRecord",
    "FaultServer",
    "RequestRecord",
    "Scenario",
    "ScenarioError",
    "WsEvent",
    "hdr",
    "parse_scenario",
    "rawra",
]
